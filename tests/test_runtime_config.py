"""Production(app): registration, FLASK_* and FLASK_*_FILE config, database URL and body limit."""

from __future__ import annotations

import secrets

import pytest
from flask import Flask

from flaskprod import ConfigurationError, Production
from flaskprod.spec import Spec

GOOD_KEY = secrets.token_hex(32)


def make_app(**settings: object) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = GOOD_KEY

    @app.post("/upload")
    def upload() -> str:
        from flask import request

        return str(len(request.get_data()))

    Production(app, spec=Spec().replace(**settings))
    return app


def test_registers_itself_and_keeps_no_app() -> None:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = GOOD_KEY
    prod = Production(spec=Spec())
    prod.init_app(app)
    assert app.extensions["flaskprod"] is prod
    assert not hasattr(prod, "app")


def test_refuses_double_registration() -> None:
    app = make_app()
    with pytest.raises(RuntimeError, match="already been registered"):
        Production(app, spec=Spec())


def test_flask_prefixed_env_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_GREETING", "hello")
    monkeypatch.setenv("FLASK_ITEMS_PER_PAGE", "25")
    app = make_app()
    assert app.config["GREETING"] == "hello"
    assert app.config["ITEMS_PER_PAGE"] == 25


def test_env_config_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_GREETING", "hello")
    app = make_app(**{"app.env_config": False})
    assert "GREETING" not in app.config


def test_file_variable_sets_the_key_from_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    secret_file = Path(str(tmp_path)) / "secret_key"
    key = secrets.token_hex(32)
    secret_file.write_text(f"{key}\n")
    monkeypatch.setenv("FLASK_SECRET_KEY_FILE", str(secret_file))
    app = Flask(__name__)  # no key in code: it must come from the file, or init_app refuses
    Production(app, spec=Spec())
    assert app.config["SECRET_KEY"] == key
    assert "SECRET_KEY_FILE" not in app.config



def test_a_file_setting_of_the_apps_own_is_a_path(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    log_file = f"{tmp_path}/app.log"  # the app creates it: it need not exist
    monkeypatch.setenv("FLASK_LOG_FILE", log_file)
    monkeypatch.setenv("FLASK_SECRET_KEY", secrets.token_hex(32))
    app = Flask(__name__)
    app.config["LOG_FILE"] = "/var/log/app.log"  # the app's own setting, read before FLASK_* override it
    Production(app, spec=Spec())
    assert app.config["LOG_FILE"] == log_file
    assert "LOG" not in app.config

def test_missing_file_names_the_variable_and_path(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    missing = f"{tmp_path}/nope"
    monkeypatch.setenv("FLASK_SECRET_KEY_FILE", missing)
    with pytest.raises(ConfigurationError) as info:
        make_app()
    assert "FLASK_SECRET_KEY_FILE" in str(info.value)
    assert missing in str(info.value)


def test_database_url_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_DB", "postgres://u:p@db/app")
    app = make_app(**{"database.url_env": "MY_DB"})
    # postgres:// is rewritten: SQLAlchemy no longer accepts that scheme.
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql://u:p@db/app"


def test_database_url_does_not_override_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    app = Flask(__name__)
    app.config.update(SECRET_KEY=GOOD_KEY, SQLALCHEMY_DATABASE_URI="sqlite:///own.db")
    Production(app, spec=Spec())
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "sqlite:///own.db"


def test_body_limit_comes_from_the_spec() -> None:
    app = make_app(**{"proxy.max_body_size": "1k"})
    assert app.config["MAX_CONTENT_LENGTH"] == 1024
    client = app.test_client()
    assert client.post("/upload", data=b"x" * 1000).text == "1000"
    assert client.post("/upload", data=b"x" * 2000).status_code == 413


def test_body_limit_set_by_the_app_is_kept() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=GOOD_KEY, MAX_CONTENT_LENGTH=5)
    Production(app, spec=Spec())
    assert app.config["MAX_CONTENT_LENGTH"] == 5


def test_spec_defaults_to_load_spec(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv("FLASKPROD_APP__NAME", "from-env")
    app = Flask(__name__)
    app.config["SECRET_KEY"] = GOOD_KEY
    prod = Production(app)
    assert prod.spec is not None
    assert prod.spec.app.name == "from-env"


@pytest.mark.parametrize(
    ("value", "expected"), [("False", False), ("no", False), ("off", False), ("True", True), ("on", True)]
)
def test_boolean_variables_are_read_as_flask_reads_flask_debug(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    # JSON alone leaves "False" or "no" a truthy string: Secure cookies over plain HTTP, or debug "on".
    monkeypatch.setenv("FLASK_SESSION_COOKIE_SECURE", value)
    monkeypatch.setenv("FLASK_TESTING", value)
    app = make_app()
    assert app.config["SESSION_COOKIE_SECURE"] is expected
    assert app.config["TESTING"] is expected


@pytest.mark.parametrize("value", ["False", "no", "0", "off"])
def test_flask_debug_off_starts(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    # Flask itself takes these as debug off; the refusal must agree instead of naming debug mode as on.
    monkeypatch.setenv("FLASK_DEBUG", value)
    app = make_app()
    assert not app.debug


def test_a_boolean_variable_that_is_not_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_SESSION_COOKIE_SECURE", "sometimes")
    with pytest.raises(ConfigurationError, match="FLASK_SESSION_COOKIE_SECURE='sometimes' is not a boolean"):
        make_app()


def test_body_limit_variable_takes_a_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # "16M" left a string made every request with a body a 500 (int compared with str).
    monkeypatch.setenv("FLASK_MAX_CONTENT_LENGTH", "1k")
    client = make_app().test_client()
    assert client.post("/upload", data=b"x" * 1000).text == "1000"
    assert client.post("/upload", data=b"x" * 2000).status_code == 413


def test_body_limit_variable_that_is_no_size_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_MAX_CONTENT_LENGTH", "lots")
    with pytest.raises(ConfigurationError, match="FLASK_MAX_CONTENT_LENGTH='lots' is not a size"):
        make_app()
