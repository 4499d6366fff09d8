"""Flask's tutorial app (flaskr, SECRET_KEY='dev' in create_app) with Production(app), under the real `flask` CLI.

Its commands that serve no request (init-db, routes, shell, db upgrade) run without FLASK_SECRET_KEY; `flask run`
without --debug and servers importing the app still refuse, in one line where flaskprod prints it; `flask run
--debug` serves the app (its first request used to find "debug mode on in production" and answer 500).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support import BIN, free_port, stop_group, wait_for

FACTORY = """\
import os

from flask import Flask

from flaskprod import Production


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
    os.makedirs(app.instance_path, exist_ok=True)

    @app.route('/hello')
    def hello():
        return 'Hello, World!'

    from . import db
    db.init_app(app)

    Production(app)
    return app
"""

DB = """\
import sqlite3

import click
from flask import current_app, g


def get_db():
    if 'db' not in g:
        g.db = sqlite3.connect(current_app.config['DATABASE'])
    return g.db


def close_db(e=None):
    db = g.pop('db', None)
    if db is not None:
        db.close()


def init_db():
    with current_app.open_resource('schema.sql') as f:
        get_db().executescript(f.read().decode('utf8'))


@click.command('init-db')
def init_db_command():
    init_db()
    click.echo('Initialized the database.')


def init_app(app):
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
"""

SCHEMA = "DROP TABLE IF EXISTS user;\nCREATE TABLE user (id INTEGER PRIMARY KEY, username TEXT UNIQUE NOT NULL);\n"

# The tutorial's app with Flask-SQLAlchemy and Flask-Migrate, as a project grows into them.
MIGRATED = """\
from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from flaskprod import Production

db = SQLAlchemy()


class Note(db.Model):
    id = db.Column(db.Integer, primary_key=True)


def create_app():
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(SECRET_KEY='dev', SQLALCHEMY_DATABASE_URI='sqlite:///notes.sqlite')
    db.init_app(app)
    Migrate(app, db)
    Production(app)
    return app
"""

SUBPROCESS_TIMEOUT = 60


@pytest.fixture
def tutorial(tmp_path: Path) -> Path:
    package = tmp_path / "flaskr"
    package.mkdir()
    (package / "__init__.py").write_text(FACTORY)
    (package / "db.py").write_text(DB)
    (package / "schema.sql").write_text(SCHEMA)
    (tmp_path / "migrated.py").write_text(MIGRATED)
    return tmp_path


def no_key_env() -> dict[str, str]:
    """The developer's environment without any FLASK_/FLASKPROD_ variable: no FLASK_SECRET_KEY exported."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "FLASKPROD_"))}
    return {**kept, "PYTHONDONTWRITEBYTECODE": "1"}


def flask(project: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flask"), *args], cwd=project, env=no_key_env(), input=stdin,
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )  # fmt: skip


def test_tutorial_init_db_runs_without_a_key(tutorial: Path) -> None:
    result = flask(tutorial, "--app", "flaskr", "init-db")
    assert result.returncode == 0, result.stderr
    assert "Initialized the database." in result.stdout
    assert (tutorial / "instance" / "flaskr.sqlite").stat().st_size > 0


def test_tutorial_routes_runs_without_a_key(tutorial: Path) -> None:
    result = flask(tutorial, "--app", "flaskr", "routes")
    assert result.returncode == 0, result.stderr
    assert "/hello" in result.stdout


def test_tutorial_shell_runs_without_a_key(tutorial: Path) -> None:
    result = flask(tutorial, "--app", "flaskr", "shell", stdin="print('shell has', app.name)\n")
    assert result.returncode == 0, result.stderr
    assert "shell has flaskr" in result.stdout


def test_db_upgrade_runs_without_a_key(tutorial: Path) -> None:
    made = flask(tutorial, "--app", "migrated", "db", "init")
    assert made.returncode == 0, made.stderr
    upgraded = flask(tutorial, "--app", "migrated", "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tutorial / "instance" / "notes.sqlite").exists()


def test_flask_run_without_debug_still_refuses_in_one_line(tutorial: Path) -> None:
    result = flask(tutorial, "--app", "flaskr", "run", "--port", str(free_port()))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: SECRET_KEY is a published default ('dev')")
    assert "FLASK_SECRET_KEY" in lines[0]


def test_flask_run_debug_serves_the_tutorial(tutorial: Path) -> None:
    port = free_port()
    args = [str(BIN / "flask"), "--app", "flaskr", "run", "--debug", "--no-reload", "--port", str(port)]
    with (tutorial / "run.log").open("w") as log:
        proc = subprocess.Popen(args, cwd=tutorial, env=no_key_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:

        def answered() -> requests.Response:
            return requests.get(f"http://127.0.0.1:{port}/hello", timeout=5)

        response = wait_for(answered, timeout=30, what="flask run --debug answering")
        assert response.status_code == 200, (tutorial / "run.log").read_text()
        assert response.text == "Hello, World!"
        # Every request, not only the first: the refusal at the first request answered all of them 500.
        assert answered().status_code == 200
    finally:
        stop_group(proc)


def test_gunicorn_importing_the_app_still_refuses(tutorial: Path) -> None:
    result = subprocess.run(
        [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{free_port()}", "flaskr:create_app()"],
        cwd=tutorial, env=no_key_env(), capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )  # fmt: skip
    assert result.returncode != 0
    assert "SECRET_KEY is a published default ('dev')" in result.stderr


def test_flaskprod_serve_still_refuses_in_one_line(tutorial: Path) -> None:
    result = subprocess.run(
        [str(BIN / "flaskprod"), "serve", "flaskr:create_app()", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=tutorial, env=no_key_env(), capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert "SECRET_KEY is a published default ('dev')" in result.stdout + result.stderr
