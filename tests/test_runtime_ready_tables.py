"""Readiness of a Flask-SQLAlchemy app without Flask-Migrate: /readyz is 503 while tables of its models are missing
from the database (a deploy that never ran its db.create_all() command answers 500 on every page), naming them and
the fix, and 200 once they exist; on a SQLite file and the real PostgreSQL, through `flaskprod serve`, and in-process
for binds and views."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import flask_sqlalchemy
import pytest
import sqlalchemy as sa
from flask import Flask

from flaskprod import Production
from flaskprod.spec import Spec
from tests.conftest import Server, StartServer, server_env
from tests.support import BIN

# The user's report: tables made by a CLI command run by hand, not at start.
CLI_CREATE_ALL_APP = """
import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flaskprod import Production

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
Production(app)
db = SQLAlchemy(app)


class Post(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    title = db.Column(db.String(80))


class Author(db.Model):
    id = db.Column(db.Integer, primary_key=True)


@app.cli.command("init-db")
def init_db():
    db.create_all()


@app.get("/")
def index():
    return {"posts": db.session.scalar(db.select(db.func.count()).select_from(Post))}
"""

FIX = "not in the database: run the app's command that creates them (deploy.release_command) or set " \
      "database.migration_check = false"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'blog.db'}"
    return str(request.getfixturevalue("fresh_pg_database"))


def readyz(server: Server) -> tuple[int, dict[str, Any]]:
    answer = server.get("/readyz")
    return answer.status_code, answer.json()


def init_db(cwd: Path, url: str) -> None:
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "app", "init-db"], cwd=cwd, env=server_env({"DATABASE_URL": url}),
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr


def ready_within(server: Server, seconds: float = 20) -> tuple[int, dict[str, Any]]:
    """The first 200 of /readyz, or its last answer after seconds (a check may overrun its time on a busy host)."""
    deadline = time.monotonic() + seconds
    status, body = readyz(server)
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        status, body = readyz(server)
    return status, body


@pytest.mark.integration
def test_readyz_is_503_naming_the_missing_tables_until_the_apps_command_creates_them(
    serve_app: StartServer, tmp_path: Path, database_url: str
) -> None:
    server = serve_app(CLI_CREATE_ALL_APP, env={"DATABASE_URL": database_url})
    assert server.get("/").status_code == 500  # what the load balancer would send users to
    status, body = readyz(server)
    assert status == 503, body
    assert body["checks"]["database"]["status"] == "ok", body
    assert body["checks"]["tables"]["error"] == f"MissingTables: author, post {FIX}", body

    init_db(tmp_path, database_url)
    status, body = ready_within(server)
    assert status == 200, body
    assert body["checks"]["tables"]["status"] == "ok", body
    assert server.get("/").json() == {"posts": 0}


@pytest.mark.integration
def test_once_every_table_was_seen_later_probes_ask_nothing(
    serve_app: StartServer, tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "app.py").write_text(CLI_CREATE_ALL_APP)
    init_db(tmp_path, database_url)
    server = serve_app(CLI_CREATE_ALL_APP, env={"DATABASE_URL": database_url})
    status, body = ready_within(server)
    assert status == 200, body
    assert body["checks"]["tables"]["status"] == "ok", body
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE author"))
    finally:
        engine.dispose()
    # The answer was kept: a serving release is not pulled from the load balancer by a later DROP.
    status, body = readyz(server)
    assert status == 200, body


@pytest.mark.integration
def test_the_migration_check_setting_turns_it_off(serve_app: StartServer, database_url: str) -> None:
    """For an app that creates its tables itself once serving (at its first request): waiting for them would keep it
    out of the load balancer for ever."""
    checked = serve_app(CLI_CREATE_ALL_APP, env={"DATABASE_URL": database_url})
    assert readyz(checked)[0] == 503
    unchecked = serve_app(
        CLI_CREATE_ALL_APP, env={"DATABASE_URL": database_url, "FLASKPROD_DATABASE__MIGRATION_CHECK": "false"}
    )
    status, body = readyz(unchecked)
    assert status == 200, body
    assert "tables" not in body["checks"], body


# --- binds and views, in-process on SQLite files -------------------------------------------------------------------


def blog_app(tmp_path: Path) -> tuple[Flask, flask_sqlalchemy.SQLAlchemy]:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secrets.token_hex(32),
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'blog.db'}",
        SQLALCHEMY_BINDS={"users": f"sqlite:///{tmp_path / 'users.db'}"},
    )
    Production(app, spec=Spec())
    db = flask_sqlalchemy.SQLAlchemy(app)

    class Post(db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.Integer, primary_key=True)

    class Account(db.Model):  # type: ignore[name-defined,misc]
        __bind_key__ = "users"
        id = db.Column(db.Integer, primary_key=True)

    class PostCount(db.Model):  # type: ignore[name-defined,misc]
        """Mapped onto a view the app's own SQL makes."""

        __tablename__ = "post_count"
        id = db.Column(db.Integer, primary_key=True)

    return app, db


def tables_result(app: Flask) -> tuple[int, dict[str, Any]]:
    answer = app.test_client().get("/readyz")
    return answer.status_code, answer.get_json()["checks"]["tables"]


def test_each_binds_missing_tables_are_named_and_a_view_counts_as_one(tmp_path: Path) -> None:
    app, db = blog_app(tmp_path)
    try:
        status, result = tables_result(app)
        assert status == 503
        assert result["error"] == f"MissingTables: post, post_count; bind 'users': account {FIX}"

        with app.app_context():
            db.create_all(bind_key=None)
            with db.engine.begin() as conn:
                conn.execute(sa.text("DROP TABLE post_count"))
                conn.execute(sa.text("CREATE VIEW post_count AS SELECT count(*) AS id FROM post"))
        status, result = tables_result(app)
        assert status == 503
        assert result["error"] == f"MissingTables: bind 'users': account {FIX}"

        with app.app_context():
            db.create_all(bind_key="users")
        assert tables_result(app)[0] == 200
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
