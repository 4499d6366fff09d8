"""An app that reads DATABASE_URL itself, as the Flask production guide's config.py does, gets the URL complete:
the password from database.password_file_env's file, the installed driver named."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from flask import Flask
from psycopg2 import sql
from sqlalchemy.engine import make_url

from flaskprod import Production
from flaskprod.spec import Spec
from tests.conftest import StartServer
from tests.pg import ThrowawayPostgres

ROLE = "shop"


@pytest.fixture(autouse=True)
def _no_database_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "DATABASE_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)


def guide_app(uri: str | None, **settings: object) -> Flask:
    """The guide's order: the app's Config (its SQLALCHEMY_DATABASE_URI read from the environment), then
    Production(app)."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), SQLALCHEMY_DATABASE_URI=uri)
    Production(app, spec=Spec().replace(**settings))
    return app


def password_file(tmp_path: Path, password: str) -> Path:
    path = tmp_path / "postgres_password"
    path.write_text(password + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("provided", "own"),
    [
        ("postgresql://shop@db:5432/shop", "postgresql://shop@db:5432/shop"),  # os.environ.get("DATABASE_URL")
        ("postgres://shop@db:5432/shop", "postgresql://shop@db:5432/shop"),  # .replace("postgres://", ...)
        ("postgres://shop@db:5432/shop", "postgres://shop@db:5432/shop"),
    ],
)
def test_the_apps_copy_of_the_url_gets_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provided: str, own: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", provided)
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(password_file(tmp_path, "p@ss word")))
    url = make_url(guide_app(own).config["SQLALCHEMY_DATABASE_URI"])
    assert (url.username, url.password, url.host, url.port, url.database) == ("shop", "p@ss word", "db", 5432, "shop")
    assert url.get_backend_name() == "postgresql"


def test_a_driver_the_app_named_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://shop@db/shop")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(password_file(tmp_path, "s3cret")))
    uri = guide_app("postgresql+pg8000://shop@db/shop").config["SQLALCHEMY_DATABASE_URI"]
    assert uri == "postgresql+pg8000://shop:s3cret@db/shop"


@pytest.mark.parametrize(
    "own",
    [
        "postgresql://shop:theirs@db/shop",  # the app put a password in itself
        "postgresql://shop@replica/shop",  # another host
        "sqlite:///shop.db",
        "",
    ],
)
def test_a_url_the_app_built_itself_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own: str) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://shop@db/shop")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(password_file(tmp_path, "s3cret")))
    assert guide_app(own).config["SQLALCHEMY_DATABASE_URI"] == own


def test_a_uri_left_none_is_filled_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://shop@db/shop")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(password_file(tmp_path, "s3cret")))
    assert guide_app(None).config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg2://shop:s3cret@db/shop"


# --- for real: a PostgreSQL whose TCP logins need the password, the app served as the guide writes it -------------

CONFIG = """
import os


class Config:
    SQLALCHEMY_DATABASE_URI = os.environ.get('DATABASE_URL')
"""

# The app installs one PostgreSQL driver: this interpreter has both, so the module hides the other (HIDE) from
# imports before anything loads it.
APP = """
import importlib.abc
import os
import sys


class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] == os.environ["HIDE"]:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Hide())

import sqlalchemy as sa
from flask import Flask, jsonify
from flask_sqlalchemy import SQLAlchemy

from config import Config
from flaskprod import Production

app = Flask(__name__)
app.config.from_object(Config)
Production(app)
db = SQLAlchemy(app)


@app.get("/who")
def who():
    return jsonify(user=db.session.scalar(sa.text("SELECT current_user")), driver=db.engine.driver)
"""


@pytest.fixture(scope="module")
def password_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThrowawayPostgres, Path]]:
    """A cluster whose TCP logins need a password (scram-sha-256), with the role and database a `build --with
    postgres` deployment has, and the secret file holding its password."""
    secret = tmp_path_factory.mktemp("secret") / "postgres_password"
    password = secrets.token_hex(16)
    secret.write_text(password + "\n")
    server = ThrowawayPostgres.create(initdb_args=("--auth-host=scram-sha-256",))
    try:
        conn = psycopg2.connect(host=str(server.socket_dir), port=server.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with contextlib.closing(conn), conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(ROLE)), [password])
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(ROLE), sql.Identifier(ROLE)))
        yield server, secret
    finally:
        server.close()


@pytest.mark.integration
@pytest.mark.parametrize(("hidden", "installed"), [("psycopg2", "psycopg"), ("psycopg", "psycopg2")])
def test_a_guide_written_app_reaches_a_password_postgresql(
    serve_app: StartServer,
    tmp_path: Path,
    password_postgres: tuple[ThrowawayPostgres, Path],
    hidden: str,
    installed: str,
) -> None:
    """What `build --with postgres` gives the app: postgresql:// with no driver and no password, the password in a
    file. The guide's config.py copied the URL as it is: every query failed ("fe_sendauth: no password
    supplied"), or with psycopg 3 alone installed, SQLAlchemy's default driver was missing."""
    server, secret = password_postgres
    (tmp_path / "config.py").write_text(CONFIG)
    app = serve_app(
        APP,
        env={
            "DATABASE_URL": f"postgresql://{ROLE}@127.0.0.1:{server.port}/{ROLE}",
            "DATABASE_PASSWORD_FILE": str(secret),
            "HIDE": hidden,
        },
    )
    response = app.get("/who")
    assert response.status_code == 200, app.output()[-3000:]
    assert response.json() == {"user": ROLE, "driver": installed}
