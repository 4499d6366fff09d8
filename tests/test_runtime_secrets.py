"""Refusal to start in production with debug on or a weak SECRET_KEY."""

from __future__ import annotations

import secrets

import pytest
from flask import Flask

from flaskprod import ConfigurationError, Production
from flaskprod.runtime.secrets import secret_key_problem
from flaskprod.spec import Spec


def start(key: object, *, debug: bool = False, testing: bool = False, **settings: object) -> Flask:
    app = Flask(__name__)
    if key is not None:
        app.config["SECRET_KEY"] = key
    app.debug = debug
    app.testing = testing
    Production(app, spec=Spec().replace(**settings))
    return app


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        # Random values get fixed ids: every pytest-xdist worker must collect the same tests.
        pytest.param(secrets.token_hex(8), "too short", id="token_hex(8)-too short"),
        ("ab" * 20, "variety"),
        ("aaaaaaaaaabbbbbbbbbbccccccccccdddddddddd", "variety"),
        ("0123456789" * 4, "repeated"),
        ("hard-to-guess-string", "published"),
        ("Hard-To-Guess-String", "published"),
        ("dev", "published"),
        ("changeme", "published"),
        ("secret" * 6, "published"),
        ("your-secret-key" + "!" * 20, "published"),
        ("development" + "0" * 25, "published"),
        ("SuperSecretSuperSecretSuperSecret", "published"),
        ("you-will-never-guess-you-will-never-guess", "published"),
        (b"_5#y2L\"F4Q8z\n\xec]/", "published"),
    ],
)
def test_weak_keys_are_refused(key: object, reason: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        start(key)
    message = str(info.value)
    assert reason in message
    # The message says how to fix it.
    assert "FLASK_SECRET_KEY" in message
    assert "secrets.token_hex" in message


@pytest.mark.parametrize(
    "key",
    [
        secrets.token_hex(32),
        secrets.token_urlsafe(32),
        secrets.token_bytes(32),
        # A random key that merely contains a published word is still random.
        "dev-" + secrets.token_hex(24),
    ],
    ids=["token_hex(32)", "token_urlsafe(32)", "token_bytes(32)", "dev-token_hex(24)"],
)
def test_strong_keys_start(key: object) -> None:
    assert start(key).extensions["flaskprod"]


def test_a_published_key_is_named_as_itself_not_by_a_word_inside_it() -> None:
    problem = secret_key_problem("super secret key", 32)
    assert problem is not None and "('super secret key')" in problem
    problem = secret_key_problem("you-will-never-guess", 32)
    assert problem is not None and "('you-will-never-guess')" in problem


def test_random_bytes_count_their_bits_not_their_characters() -> None:
    # os.urandom(16): 128 bits, as strong as the 32 hex digits min_length asks of text.
    key = secrets.token_bytes(16)
    assert secret_key_problem(key, 32) is None
    assert start(key).extensions["flaskprod"]
    problem = secret_key_problem(secrets.token_bytes(12), 32)
    assert problem is not None and "too short (12 random bytes, at least 16 needed)" in problem
    # Bytes that are text are text: as weak as the same characters in a str.
    problem = secret_key_problem(b"k8#Qz!2mVw&9LpRx", 32)
    assert problem is not None and "too short (16 characters, at least 32 needed)" in problem


def test_min_length_comes_from_the_spec() -> None:
    key = secrets.token_hex(20)  # 40 characters
    start(key)
    with pytest.raises(ConfigurationError, match="at least 48"):
        start(key, **{"security.secret_min_length": 48})


def test_without_env_config_the_fix_is_not_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_SECRET_KEY", secrets.token_hex(32))  # set, and not read: env_config is off
    with pytest.raises(ConfigurationError) as refused:
        start(None, **{"app.env_config": False})
    assert str(refused.value) == (
        "SECRET_KEY is missing: app.env_config is off, so FLASK_SECRET_KEY is not read: set SECRET_KEY in the "
        "app's config, or turn app.env_config on; in tests, turn TESTING on before Production(app) runs: pass it to "
        "the factory (create_app({'TESTING': True}))"  # not FLASK_TESTING: unread too
    )
    monkeypatch.delenv("FLASK_SECRET_KEY")
    with pytest.raises(ConfigurationError, match="set FLASK_SECRET_KEY or FLASK_SECRET_KEY_FILE"):
        start(None)  # env_config on, the variable unset: the usual fix


def test_debug_is_refused_in_production() -> None:
    # Set in the app's config, not by FLASK_DEBUG: unsetting the variable would not help.
    with pytest.raises(ConfigurationError, match="debug mode is on in production: the app's config turns it on"):
        start(secrets.token_hex(32), debug=True)


def test_debug_from_env_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_DEBUG", "1")
    with pytest.raises(ConfigurationError, match="debug mode is on in production: unset FLASK_DEBUG"):
        start(secrets.token_hex(32))


def test_testing_apps_are_exempt() -> None:
    assert start("dev", testing=True)
    assert start(None, debug=True, testing=True)


def test_refusal_can_be_switched_off() -> None:
    assert start("dev", **{"security.refuse_unsafe": False})


def test_weak_fallback_key_is_refused() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), SECRET_KEY_FALLBACKS=["changeme"])
    with pytest.raises(ConfigurationError, match="SECRET_KEY_FALLBACKS"):
        Production(app, spec=Spec())


def test_problem_function_accepts_good_and_names_bad() -> None:
    assert secret_key_problem(secrets.token_hex(32), 32) is None
    problem = secret_key_problem("hard-to-guess-string", 32)
    assert problem is not None and "hard-to-guess-string" in problem


def late_app(monkeypatch: pytest.MonkeyPatch, late: str) -> Flask:
    """tests.apps.late_config's factory: FLASK_SECRET_KEY strong, then the app sets late ('key' or 'debug')."""
    from tests.apps.late_config import create_app

    monkeypatch.setenv("FLASK_SECRET_KEY", secrets.token_hex(32))
    monkeypatch.setenv("LATE_CONFIG", late)
    return create_app()


@pytest.mark.parametrize(
    ("late", "reason"),
    [
        ("key", "published default ('dev'): anyone can forge sessions; the app set it after Production(app)"),
        ("debug", "debug mode is on in production: the app turned it on after Production(app)"),
    ],
)
def test_config_set_after_production_is_refused_as_loaded(
    monkeypatch: pytest.MonkeyPatch, late: str, reason: str
) -> None:
    from flaskprod.discovery import AppRef, load

    app = late_app(monkeypatch, late)  # Production(app) passed: the key it read was strong
    assert app.config["SECRET_KEY"] == "dev" or app.debug
    with pytest.raises(ConfigurationError) as refused:
        load(AppRef(path=".", module="tests.apps.late_config", name="create_app()"))
    assert reason in str(refused.value)
    assert "set FLASK_SECRET_KEY" not in str(refused.value)  # the app overrides it: no use


def test_a_server_flaskprod_did_not_start_refuses_every_request(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = late_app(monkeypatch, "key")
    client = app.test_client()
    for path in ("/", "/healthz", "/"):
        response = client.get(path)
        assert response.status_code == 500
        assert response.data == b"refused: unsafe configuration, see the log\n"  # nothing of the config
    refusals = [r for r in caplog.records if r.getMessage().startswith("refusing every request")]
    assert len(refusals) == 1 and "published default ('dev')" in refusals[0].getMessage()

