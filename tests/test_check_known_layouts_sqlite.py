"""FP-C020 on the shapes of well-known Flask projects whose SQLite file beside the code is the fallback of an
environment variable: Flasky's ProductionConfig and microblog's Config (os.environ.get('DATABASE_URL') or
'sqlite:///' + os.path.join(basedir, 'app.db')). A deployment that sets the variable never opens the file: the
finding names the variable, and is quiet when a deployment file sets it."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

# Flasky's config.py, cut to what the database needs (its create_app(config_name), config dict and FLASK_CONFIG).
FLASKY_CONFIG = """\
import os
basedir = os.path.abspath(os.path.dirname(__file__))


class Config:
    SQLALCHEMY_TRACK_MODIFICATIONS = False


class DevelopmentConfig(Config):
    DEBUG = True
    SQLALCHEMY_DATABASE_URI = os.environ.get('DEV_DATABASE_URL') or \\
        'sqlite:///' + os.path.join(basedir, 'data-dev.sqlite')


class ProductionConfig(Config):
    SQLALCHEMY_DATABASE_URI = os.environ.get('DATABASE_URL') or \\
        'sqlite:///' + os.path.join(basedir, 'data.sqlite')


config = {
    'development': DevelopmentConfig,
    'production': ProductionConfig,
    'default': DevelopmentConfig
}
"""
FLASKY_APP = """\
import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from config import config

db = SQLAlchemy()


def create_app(config_name):
    app = Flask(__name__)
    app.config.from_object(config[config_name])
    db.init_app(app)
    return app


app = create_app(os.getenv('FLASK_CONFIG') or 'default')
"""
# microblog's config.py (its 2024 form: Heroku's postgres:// rewritten) and app factory.
MICROBLOG_CONFIG = """\
import os

basedir = os.path.abspath(os.path.dirname(__file__))


class Config:
    SQLALCHEMY_DATABASE_URI = os.environ.get('DATABASE_URL', '').replace(
        'postgres://', 'postgresql://') or \\
        'sqlite:///' + os.path.join(basedir, 'app.db')
"""
MICROBLOG_APP = """\
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from config import Config

db = SQLAlchemy()


def create_app(config_class=Config):
    app = Flask(__name__)
    app.config.from_object(config_class)
    db.init_app(app)
    return app


app = create_app()
"""
COMPOSE = "services:\n  web:\n    build: .\n    environment:\n      DATABASE_URL: ${DATABASE_URL}\n"


def _c020(project: Path, files: dict[str, str], env: dict[str, str | None] | None = None) -> list[tuple[str, str]]:
    found = audit(project, {**files, "requirements.txt": "flask\n"}, "app:app", env=env).only("FP-C020")
    return [(m["obj"], m["text"] + " HINT " + m["hint"]) for m in found]


def test_microblogs_fallback_names_the_variable_a_deployment_sets(project: Path) -> None:
    (obj, text), = _c020(project, {"config.py": MICROBLOG_CONFIG, "app.py": MICROBLOG_APP})
    assert obj == "config.py:9"
    assert "app.db is the fallback of DATABASE_URL (read at config.py:7), which is unset where check runs" in text
    assert "set DATABASE_URL to a database server's URL wherever the app runs" in text
    # Where a deployment file sets it, the file is never opened there.
    files = {"config.py": MICROBLOG_CONFIG, "app.py": MICROBLOG_APP, "compose.yaml": COMPOSE}
    assert _c020(project, files) == []


def test_flaskys_production_config_names_database_url(project: Path) -> None:
    files = {"config.py": FLASKY_CONFIG, "app.py": FLASKY_APP}
    (obj, text), = _c020(project, files, env={"FLASK_CONFIG": "production"})
    assert obj == "config.py:17"
    assert "data.sqlite is the fallback of DATABASE_URL (read at config.py:16)" in text


def test_flaskys_development_default_names_the_config_variable(project: Path) -> None:
    # FLASK_CONFIG unset: the deployments load DevelopmentConfig too, whose file is DEV_DATABASE_URL's fallback;
    # setting DEV_DATABASE_URL in production is not the fix, FLASK_CONFIG is.
    (obj, text), = _c020(project, {"config.py": FLASKY_CONFIG, "app.py": FLASKY_APP})
    assert obj == "config.py:12"
    assert "data-dev.sqlite is the fallback of DEV_DATABASE_URL (read at config.py:11)" in text
    assert "FLASK_CONFIG (read at app.py:18) is unset, so the app loaded the code's default config, 'default'" in text
    assert text.endswith(
        "HINT set FLASK_CONFIG to the production config wherever the app runs, and where check runs to audit that "
        "config's database, or make production the code's default"
    )
