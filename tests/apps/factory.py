"""An app built by a factory, with and without arguments, and no module-level app."""

from __future__ import annotations

from flask import Flask


def create_app(name: str = "factory") -> Flask:
    app = Flask(name)

    @app.get("/")
    def index() -> str:
        return f"hello from {app.name}"

    return app
