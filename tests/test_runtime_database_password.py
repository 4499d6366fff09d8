"""The database URL in plain sight, its password from a secret file (database.password_file_env)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy.engine import make_url

from flaskprod import ConfigurationError, Production
from flaskprod.spec import Spec
from tests.conftest import Postgres, server_env

GOOD_KEY = secrets.token_hex(32)


@pytest.fixture(autouse=True)
def _no_database_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "DATABASE_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)


def start(**settings: object) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = GOOD_KEY
    Production(app, spec=Spec().replace(**settings))
    return app


def secret_file(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "postgres_password"
    path.write_text(content, encoding="utf-8")
    return path


def test_the_password_file_completes_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Characters a URL gives meaning to: each must come out of SQLAlchemy's parsing as written.
    password = "p@ss:w/rd %?#&=+ é"
    monkeypatch.setenv("DATABASE_URL", "postgresql://shop@postgres:5432/shop")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret_file(tmp_path, password + "\n")))
    url = make_url(start().config["SQLALCHEMY_DATABASE_URI"])
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "shop",
        password,
        "postgres",
        5432,
        "shop",
    )


@pytest.mark.parametrize(
    ("content", "password"),
    [
        # As the image reads POSTGRES_PASSWORD_FILE (bash's $(< file)): trailing newlines go, spaces stay.
        ("secret-one\n\n", "secret-one"),
        ("  spaced  \n", "  spaced  "),
        ("no-newline", "no-newline"),
    ],
)
def test_the_password_is_read_as_the_postgres_image_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, password: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://app@db/app")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret_file(tmp_path, content)))
    assert make_url(start().config["SQLALCHEMY_DATABASE_URI"]).password == password


def test_the_variables_are_named_by_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DB", "postgres://shop@db/shop")
    monkeypatch.setenv("SHOP_DB_PASSWORD", str(secret_file(tmp_path, "s3cret\n")))
    # Unnamed, the default variable is ignored.
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(tmp_path / "not-read"))
    app = start(**{"database.url_env": "SHOP_DB", "database.password_file_env": "SHOP_DB_PASSWORD"})
    # postgres:// is still rewritten for SQLAlchemy, and the password put in.
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql://shop:s3cret@db/shop"


def test_a_unix_socket_url_takes_the_password_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://shop@/shop?host=/var/run/postgresql")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret_file(tmp_path, "s3cret\n")))
    assert start().config["SQLALCHEMY_DATABASE_URI"] == "postgresql://shop:s3cret@/shop?host=/var/run/postgresql"


def test_without_a_password_file_the_url_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db/app")
    assert start().config["SQLALCHEMY_DATABASE_URI"] == "postgresql://u:p@db/app"
    monkeypatch.delenv("DATABASE_URL")
    assert "SQLALCHEMY_DATABASE_URI" not in start().config


def test_the_app_own_uri_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://shop@db/shop")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret_file(tmp_path, "s3cret\n")))
    app = Flask(__name__)
    app.config.update(SECRET_KEY=GOOD_KEY, SQLALCHEMY_DATABASE_URI="sqlite:///own.db")
    Production(app, spec=Spec())
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "sqlite:///own.db"


@pytest.mark.parametrize(
    ("url", "content", "message"),
    [
        (
            None,
            "s3cret",
            "DATABASE_PASSWORD_FILE is set but DATABASE_URL is not: set DATABASE_URL to the database URL "
            "without its password",
        ),
        (
            "postgresql://shop:other@db/shop",
            "s3cret",
            "DATABASE_URL carries a password and DATABASE_PASSWORD_FILE gives one too: remove it from DATABASE_URL",
        ),
        ("postgresql://db/shop", "s3cret", "DATABASE_URL names no user for the password in DATABASE_PASSWORD_FILE"),
        ("postgresql://shop@db/shop", "\n", "which is empty: write the database password into it"),
        ("postgresql://shop@db/shop", "one\ntwo\n", "which holds more than one line"),
    ],
)
def test_mistakes_are_refused_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str | None, content: str, message: str
) -> None:
    if url is not None:
        monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret_file(tmp_path, content)))
    with pytest.raises(ConfigurationError) as info:
        start()
    assert message in str(info.value)
    # The message never shows the password.
    assert "s3cret" not in str(info.value)


def test_a_missing_password_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope"
    monkeypatch.setenv("DATABASE_URL", "postgresql://shop@db/shop")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(missing))
    with pytest.raises(ConfigurationError, match=f"DATABASE_PASSWORD_FILE points to {missing}, which does not exist"):
        start()



# An app whose requirements name one PostgreSQL driver: this interpreter has both, so the script hides the
# other from imports before anything loads.
ONE_DRIVER_APP = """
import importlib.abc
import secrets
import sys


class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] == sys.argv[1]:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Hide())

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flaskprod import Production

app = Flask(__name__)
app.config["SECRET_KEY"] = secrets.token_hex(32)
Production(app)
db = SQLAlchemy(app)
with app.app_context():
    print(db.session.scalar(sa.text("SELECT current_user")))
"""


@pytest.mark.integration
@pytest.mark.parametrize("hidden", ["psycopg2", "psycopg"])
def test_a_url_naming_no_driver_reaches_postgresql_with_either_driver_alone(
    tmp_path: Path, postgres: Postgres, hidden: str
) -> None:
    # What `build --with postgres` gives the app: postgresql:// with no driver, the password in a file.
    url = make_url(postgres.url)
    environ = server_env({
        "DATABASE_URL": url.set(drivername="postgresql", password=None).render_as_string(hide_password=False),
        "DATABASE_PASSWORD_FILE": str(secret_file(tmp_path, "unused-under-trust\n")),
    })  # fmt: skip
    script = tmp_path / "app.py"
    script.write_text(ONE_DRIVER_APP)
    done = subprocess.run(
        [sys.executable, str(script), hidden], env=environ, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == url.username
