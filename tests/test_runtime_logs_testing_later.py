"""pytest's caplog sees app.logger's records when a test turns TESTING on after Production(app) ran (Flask's tutorial
does, in its app fixture), and the app's records are still written once when it is off."""

from __future__ import annotations

import io
import logging
import secrets
import subprocess
import textwrap
from pathlib import Path

from flask import Flask

from flaskprod import Production
from flaskprod.spec import Spec
from tests.support import PYTHON

USER_APP = """
from flask import Flask
from flaskprod import Production

def create_app(test_config=None):
    app = Flask(__name__)
    app.config["SECRET_KEY"] = {key!r}
    Production(app)
    if test_config:
        app.config.update(test_config)

    @app.get("/")
    def index():
        app.logger.warning("index visited")
        return "ok"

    return app
"""

# The app made in the first test's body: the way pytest's log capture misses a logger that stops propagating after
# the test began (pytest 9.2 attaches its handlers to loggers that do not propagate, but only when a test starts).
USER_TESTS = """
import logging
import pytest
from app import create_app

def test_made_with_test_config(caplog):
    app = create_app({"TESTING": True})
    with caplog.at_level(logging.INFO):
        app.test_client().get("/")
    assert [r.getMessage() for r in caplog.records if r.name == "app"] == ["index visited"]

@pytest.fixture
def app():
    app = create_app()
    app.config.update({"TESTING": True})
    return app

def test_tutorial_fixture(app, caplog):
    app.test_client().get("/")
    assert [r.getMessage() for r in caplog.records if r.name == "app"] == ["index visited"]

def test_made_then_testing(caplog):
    app = create_app()
    app.testing = True
    with app.test_request_context():
        app.logger.error("outside a request too")
    assert "outside a request too" in caplog.text
"""


def test_a_users_tests_see_the_apps_records_in_caplog(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(USER_APP.format(key=secrets.token_hex(32)))
    (tmp_path / "test_app.py").write_text(textwrap.dedent(USER_TESTS))
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_app.py"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_records_go_up_only_while_testing_is_on() -> None:
    app = Flask("testing_later")
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    Production(app, spec=Spec())
    root_lines = io.StringIO()
    root_handler = logging.StreamHandler(root_lines)
    logging.getLogger().addHandler(root_handler)
    try:
        app.logger.warning("in production")
        app.config["TESTING"] = True
        app.logger.warning("under test")
        app.config["TESTING"] = False
        app.logger.warning("in production again")
    finally:
        logging.getLogger().removeHandler(root_handler)
    # The root handler (basicConfig's in production, caplog's in a test) writes no line twice.
    assert root_lines.getvalue() == "under test\n"
