"""An app that calls app.run() as it is imported, outside an `if __name__ == "__main__":` guard."""

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/")
def index() -> str:
    return "served by the production server"


app.run(host="127.0.0.1", port=0)  # under `flask run` Flask ignores it; started, it would serve until stopped
