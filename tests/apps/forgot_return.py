"""A factory that makes its app and forgets to return it."""

from flask import Flask


def create_app() -> None:
    app = Flask(__name__)

    @app.get("/")
    def index() -> str:
        return "ok"
