"""The README's quick start on an app configured by `app.config.from_prefixed_env()` and a `.flaskenv`, as
`flask run` loads it: flaskprod reads FLASK_APP from the file and nothing else, so the app's own settings there are
missing when it loads, and the error has to say where they are."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.support import readable, run_flaskprod

# The app of flaskprod's own audit: its upload folder comes from FLASK_UPLOAD_DIR, which only .flaskenv sets.
FACTORY = """\
import os
from flask import Flask
from flaskprod import Production


def create_app():
    app = Flask(__name__)
    app.config.from_prefixed_env()
    Production(app)
    os.makedirs(os.path.join(app.instance_path, app.config["UPLOAD_DIR"]), exist_ok=True)
    return app
"""
FLASKENV = 'FLASK_APP=hello\nFLASK_DEBUG=1\nFLASK_GREETING="Hi"\nFLASK_UPLOAD_DIR=uploads\n'
HINT = (
    "; FLASK_UPLOAD_DIR is set in .flaskenv, which flask run loads and production servers do not: "
    "export it where flaskprod runs"
)


def project(root: Path) -> None:
    (root / "hello").mkdir()
    (root / "hello" / "__init__.py").write_text(FACTORY)
    (root / ".flaskenv").write_text(FLASKENV)
    (root / "requirements.txt").write_text("flask\nflaskprod\n")


@pytest.mark.parametrize("command", [["check"], ["init"], ["build", "--target", "compose"], ["serve"], ["up"]])
def test_a_setting_only_flaskenv_holds_is_named_where_the_app_fails_without_it(
    tmp_path: Path, command: list[str]
) -> None:
    """Was "error while loading 'hello': KeyError: 'UPLOAD_DIR'", naming neither FLASK_UPLOAD_DIR nor .flaskenv,
    for an app that `flask run` starts."""
    project(tmp_path)
    env = {"FLASK_SECRET_KEY": secrets.token_hex(32), "PATH": "/usr/sbin:/usr/bin:/bin"}  # up's nginx: /usr/sbin
    result = run_flaskprod(*command, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    last = readable(result.stderr).splitlines()[-1]
    loading = "Error: error while loading 'hello': KeyError: 'UPLOAD_DIR'"
    assert last == f"{loading}{HINT} (the app FLASK_APP in .flaskenv names)"


def test_a_setting_exported_is_not_blamed_on_flaskenv(tmp_path: Path) -> None:
    """Set where flaskprod runs, the variable is no longer the problem: the app then loads."""
    project(tmp_path)
    env = {"FLASK_SECRET_KEY": secrets.token_hex(32), "FLASK_UPLOAD_DIR": "uploads"}
    result = run_flaskprod("check", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "instance" / "uploads").is_dir()
