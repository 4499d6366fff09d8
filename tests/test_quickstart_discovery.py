"""The README's quick start on the layouts real projects have, where no wsgi.py or app.py names the app: the
Flask tutorial's flaskr package (create_app() in flaskr/__init__.py, run as `flask --app flaskr`) and an app in
server.py bound to `application`. With no APP given, the one line says what to pass for the app that is there."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from flaskprod.discovery import resolve
from flaskprod.errors import DiscoveryError
from tests.support import readable, run_flaskprod

FLASKR = """\
import os
from flask import Flask
from flaskprod import Production


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_pyfile("config.py", silent=True)
    Production(app)
    os.makedirs(app.instance_path, exist_ok=True)
    return app
"""
SERVER = """\
import flask
from flaskprod import Production

application: flask.Flask = flask.Flask(__name__)
Production(application)

if __name__ == "__main__":
    application.run(debug=True)
"""


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_flaskprod(*args, cwd=cwd, env={"FLASK_SECRET_KEY": secrets.token_hex(32)})


@pytest.mark.parametrize(
    ("files", "found"),
    [
        ({"flaskr/__init__.py": FLASKR, "flaskr/db.py": "import sqlite3\n"}, "flaskr:create_app()"),
        ({"server.py": SERVER, "blueprints/__init__.py": "", "manage.py": "import sys\n"}, "server:application"),
    ],
)
def test_init_with_no_app_named_says_which_app_the_folder_holds(
    tmp_path: Path, files: dict[str, str], found: str
) -> None:
    """Was "pass APP such as 'module:app' or 'module:create_app()'", with the app one folder or file away."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result = run_cli("init", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert readable(result.stderr).splitlines() == [
        f"Error: no Flask app found: tried FLASK_APP, wsgi.py, app.py in {tmp_path}; pass APP such as '{found}', "
        "which this folder holds"
    ]
    # What the line says to pass is what init then writes.
    assert run_cli("init", found, cwd=tmp_path).returncode == 0
    assert f'target = "{found}"' in (tmp_path / "flaskprod.toml").read_text()


def test_modules_are_read_not_imported_and_apps_come_before_factories(tmp_path: Path) -> None:
    """A module that would fail or act on import is parsed only; at most three names, Flask's order (apps first)."""
    (tmp_path / "boom.py").write_text("raise SystemExit(3)\n\ndef create_app():\n    pass\n")
    (tmp_path / "site_app.py").write_text("from flask import Flask\nweb = Flask(__name__)\nadmin = Flask('admin')\n")
    (tmp_path / "broken.py").write_text("def (:\n")
    with pytest.raises(DiscoveryError) as info:
        resolve(None, tmp_path)
    assert str(info.value).endswith(
        "pass APP such as 'site_app:web' or 'site_app:admin' or 'boom:create_app()', which this folder holds"
    )


def test_a_src_layout_package_is_named_and_passing_it_says_to_install_the_project(tmp_path: Path) -> None:
    """A src layout (src/myapp/__init__.py, dependencies in pyproject.toml) gave the generic hint; the package it
    names is then found once the project is installed, which the next error says."""
    (tmp_path / "src" / "myapp").mkdir(parents=True)
    (tmp_path / "src" / "myapp" / "__init__.py").write_text(FLASKR)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "myapp"\nversion = "0.3.0"\ndependencies = ["flask"]\n')
    result = run_cli("init", cwd=tmp_path)
    assert readable(result.stderr).splitlines() == [
        f"Error: no Flask app found: tried FLASK_APP, wsgi.py, app.py in {tmp_path}; pass APP such as "
        "'myapp:create_app()', which this folder holds"
    ]
    result = run_cli("init", "myapp:create_app()", cwd=tmp_path)
    assert readable(result.stderr).splitlines()[-1].endswith(
        "it is in src/myapp, which is not on the import path (a src layout): install the project with "
        "`pip install -e .`, or run with PYTHONPATH=src"
    )
