"""FP-S010's hint for apps without Production(app) whose key is written in the source, checked with the quick start's
FLASK_SECRET_KEY exported: the Flask tutorial's flaskr (from_mapping(SECRET_KEY='dev')) and Flasky's and microblog's
os.environ.get('SECRET_KEY') or 'hard to guess string'. Neither reads FLASK_SECRET_KEY, so 'set FLASK_SECRET_KEY'
is no fix: the hint says what does reach the app."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import STRONG_KEY, audit

project = test_check.project  # the fixture: tmp_path as the current directory, FLASK_SECRET_KEY strong

FLASKR = """\
import os

from flask import Flask


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY='dev',
        DATABASE=os.path.join(app.instance_path, 'flaskr.sqlite'),
    )
    if test_config is None:
        app.config.from_pyfile('config.py', silent=True)
    else:
        app.config.from_mapping(test_config)
    return app


app = create_app()
"""
FLASKY = """\
import os

from flask import Flask


class Config:
    SECRET_KEY = os.environ.get('SECRET_KEY') or 'hard to guess string'


app = Flask(__name__)
app.config.from_object(Config)
"""


def _s010(project: Path, app: str) -> list[tuple[str, str]]:
    found = audit(project, {"app.py": app, "requirements.txt": "flask\n"}, "app:app").only("FP-S010")
    return [(m["obj"], m["hint"]) for m in found]


def test_flaskrs_written_key_with_flask_secret_key_exported(project: Path) -> None:
    assert _s010(project, FLASKR) == [
        (
            "app.py:9",
            "FLASK_SECRET_KEY is set, but the app does not read it: add Production(app) (it reads FLASK_SECRET_KEY), "
            "or call app.config.from_prefixed_env(); then remove the string from the source, so that a missing key "
            "fails instead of falling back",
        )
    ]


def test_flaskys_fallback_names_the_variable_its_code_reads(project: Path) -> None:
    assert STRONG_KEY  # exported by the fixture, and unread by the app
    assert _s010(project, FLASKY) == [
        (
            "app.py:7",
            "FLASK_SECRET_KEY is set, but the app does not read it: its code reads the key from SECRET_KEY: set "
            "SECRET_KEY to a new random value wherever the app runs, or add Production(app) (it reads "
            "FLASK_SECRET_KEY); then remove the string from the source, so that a missing key fails instead of "
            "falling back",
        )
    ]
