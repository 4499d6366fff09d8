"""Flask's tutorial factory with Production(app) first: the app sets its own key (or debug) afterwards, over the
FLASK_SECRET_KEY that Production(app) read. LATE_CONFIG names what it sets: key (the default) or debug."""

from __future__ import annotations

import os

from flask import Flask

from flaskprod import Production


def create_app() -> Flask:
    app = Flask(__name__)
    Production(app)
    if os.environ.get("LATE_CONFIG") == "debug":
        app.config["DEBUG"] = True
    else:
        app.config.from_mapping(SECRET_KEY="dev")

    @app.route("/")
    def index() -> str:
        return "ok"

    return app
