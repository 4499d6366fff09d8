"""taskboard: the flaskprod reference app (factory, SQLAlchemy, CSRF-protected forms, JSON API)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_wtf import CSRFProtect

from flaskprod import Production

from .config import get_config
from .models import create_schema, db, seed_demo

__all__ = ["create_app", "csrf", "db"]

csrf = CSRFProtect()


def create_app(config_name: str | None = None, overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app for `config_name` (else TASKBOARD_CONFIG); `overrides` win over both."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(get_config(config_name))
    if overrides:
        app.config.update(overrides)

    # Before db.init_app: Production sets SQLALCHEMY_DATABASE_URI from DATABASE_URL (with the
    # password in DATABASE_PASSWORD_FILE, when set) unless it is set already, fills in
    # SQLALCHEMY_ENGINE_OPTIONS (pre-ping, pool sized from the workers) and loads FLASK_*
    # settings, which Flask-SQLAlchemy reads once, at init_app time. It also adds /healthz,
    # /readyz and /metrics.
    Production(app)
    # Explicit settings win, then the database URL Production read, then a SQLite file in the instance folder.
    os.makedirs(app.instance_path, exist_ok=True)
    sqlite_uri = "sqlite:///" + os.path.join(app.instance_path, "taskboard.sqlite3")
    app.config.setdefault("SQLALCHEMY_DATABASE_URI", sqlite_uri)
    db.init_app(app)
    csrf.init_app(app)

    from . import api, views

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    # The API takes JSON from scripts, not forms from browsers: no cookie-bound CSRF token.
    csrf.exempt(api.bp)

    with app.app_context():
        create_schema()
        if app.config["TASKBOARD_SEED_DEMO"]:
            seed_demo()

    return app
