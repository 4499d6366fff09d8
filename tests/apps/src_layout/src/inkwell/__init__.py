"""A src-layout project's app: notes kept in a SQLite file in Flask's instance folder, its config read from there."""

from __future__ import annotations

import os
import sqlite3

from flask import Flask, request

from flaskprod import Production


def create_app() -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    # instance/config.py, kept out of the image, as Flask's tutorial keeps the production settings.
    app.config.from_pyfile("config.py", silent=True)
    Production(app)
    os.makedirs(app.instance_path, exist_ok=True)
    database = os.path.join(app.instance_path, "inkwell.sqlite3")

    @app.post("/notes")
    def add_note() -> tuple[str, int]:
        with sqlite3.connect(database) as db:
            db.execute("CREATE TABLE IF NOT EXISTS notes (text TEXT)")
            db.execute("INSERT INTO notes VALUES (?)", (request.get_data(as_text=True),))
        return "", 201

    @app.get("/")
    def index() -> str:
        return "inkwell"

    return app
