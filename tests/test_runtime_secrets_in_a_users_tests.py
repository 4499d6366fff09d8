"""A user's first pytest run with no FLASK_SECRET_KEY: the refusal at Production(app) says how a test's app is
exempt, and each way it names works. A real pytest, run on a tiny user suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

APP = """\
from flask import Flask
from flaskprod import Production


def create_app(config=None):
    app = Flask(__name__)
    app.config.update(config or {})
    Production(app)
    app.add_url_rule("/", "index", lambda: "hi")
    return app
"""
# The fixture Flask's tutorial writes: TESTING turned on once the factory (and Production(app)) ran.
TESTING_AFTER = """\
import pytest
from myapp import create_app


@pytest.fixture()
def app():
    app = create_app()
    app.config.update(TESTING=True)
    return app


def test_index(app):
    assert app.test_client().get("/").text == "hi"
"""
TESTING_GIVEN = TESTING_AFTER.replace(
    "app = create_app()\n    app.config.update(TESTING=True)", 'app = create_app({"TESTING": True})'
)


def users_pytest(project: Path, test_file: str, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest on the user's test_file in project, with no FLASK_/FLASKPROD_/PYTEST_ variable of this run's."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "FLASKPROD_", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=short", test_file],
        cwd=project,
        env={**inherited, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "myapp.py").write_text(APP)
    (tmp_path / "test_after.py").write_text(TESTING_AFTER)
    (tmp_path / "test_given.py").write_text(TESTING_GIVEN)
    (tmp_path / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    return tmp_path


def test_the_refusal_in_a_users_tests_names_the_way_out_for_tests(project: Path) -> None:
    run = users_pytest(project, "test_after.py")
    assert run.returncode == 1, run.stdout + run.stderr
    refusal = [line for line in run.stdout.splitlines() if line.startswith("E ") and "ConfigurationError" in line]
    assert refusal, run.stdout
    assert refusal[0].split("ConfigurationError: ", 1)[1] == (
        "SECRET_KEY is missing: set FLASK_SECRET_KEY or FLASK_SECRET_KEY_FILE to a random value, e.g. python -c "
        "'import secrets; print(secrets.token_hex(32))'; in tests, turn TESTING on before Production(app) runs: "
        "pass it to the factory (create_app({'TESTING': True})) or set FLASK_TESTING=true in the tests' environment"
    )


def test_each_way_out_it_names_lets_the_users_tests_run(project: Path) -> None:
    given = users_pytest(project, "test_given.py")
    assert given.returncode == 0, given.stdout + given.stderr
    # FLASK_TESTING is read into the app's config with the FLASK_* variables, before the refusal looks.
    from_env = users_pytest(project, "test_after.py", FLASK_TESTING="true")
    assert from_env.returncode == 0, from_env.stdout + from_env.stderr
    assert "1 passed" in from_env.stdout
