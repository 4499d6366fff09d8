from tests.apps.circular import app


@app.get("/")
def index() -> str:
    return "ok"
