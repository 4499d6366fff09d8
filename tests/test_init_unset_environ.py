"""`flaskprod init` of an app that reads a variable it needs with os.environ[...] (DATABASE_URL, which `up --with
postgres` gives it), unset in the shell: the error names the variable and what to do, not only Python's KeyError."""

from __future__ import annotations

from pathlib import Path

from tests.test_init import flaskprod

NEEDS_URL = """\
import os

from flask import Flask


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["SHOP_DATABASE_URL"]
    return app
"""


def error_line(project: Path, source: str) -> str:
    (project / "app.py").write_text(source)
    result = flaskprod(project, "init", "app:create_app()")
    assert result.returncode == 2, result.stdout
    return result.stderr.splitlines()[-1]


def test_the_unset_variable_is_named_with_the_fix(tmp_path: Path) -> None:
    assert error_line(tmp_path, NEEDS_URL) == (
        "Error: error while loading 'app:create_app()': KeyError: 'SHOP_DATABASE_URL'; the app reads the environment "
        "variable SHOP_DATABASE_URL, which is not set here: export it where flaskprod runs (init and build only "
        "import the app: any value it accepts will do)"
    )


def test_a_missing_config_key_is_no_variable(tmp_path: Path) -> None:
    source = NEEDS_URL.replace('os.environ["SHOP_DATABASE_URL"]', 'app.config["SHOP_DATABASE_URL"]')
    assert error_line(tmp_path, source) == (
        "Error: error while loading 'app:create_app()': KeyError: 'SHOP_DATABASE_URL'"
    )
