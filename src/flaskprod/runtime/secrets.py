"""Refusal to start with debug on or a SECRET_KEY that protects nothing."""

from __future__ import annotations

import sys
import weakref

import click
from flask import Flask
from flask.cli import FlaskGroup, run_command
from flask.helpers import get_debug_flag

from ..errors import ConfigurationError
from ..spec import Spec

# Values published in the Flask docs, tutorials, books and templates: anyone can sign a session with them.
PUBLISHED_SECRETS = (
    "hard-to-guess-string",
    "hard to guess string",
    "you-will-never-guess",
    "dev",
    "development",
    "development key",
    "changeme",
    "change-me",
    "change_me",
    "changeit",
    "secret",
    "secret-key",
    "secret_key",
    "secretkey",
    "mysecret",
    "my-secret-key",
    "your-secret-key",
    "your_secret_key",
    "supersecret",
    "super-secret",
    "super secret key",
    "super-secret-key",
    "keyboard cat",
    "password",
    "default",
    "insecure",
    "test",
    "testing",
    "_5#y2L\"F4Q8z\n\xec]/",  # the Flask quickstart's example key
)
# Longest first: a key is named by the value it is ('super secret key'), not by a word inside it ('secret').
_PUBLISHED_LONGEST_FIRST = sorted((value.lower() for value in PUBLISHED_SECRETS), key=len, reverse=True)
MIN_DISTINCT = 10
HOW_TO_GENERATE = "python -c 'import secrets; print(secrets.token_hex(32))'"
FIX = f"set FLASK_SECRET_KEY or FLASK_SECRET_KEY_FILE to a random value, e.g. {HOW_TO_GENERATE}"
# The fix when the app set the value after Production(app) had read the FLASK_* variables: setting them is no use.
LATE_FIX = (
    "the app set it after Production(app) read FLASK_SECRET_KEY: remove the app's own value, or call "
    "Production(app) once the app's config is loaded"
)


def _as_text(key: object) -> str:
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("latin-1")
    return str(key)


def _period(text: str) -> int:
    """Length of the shortest block that, repeated, makes up text (len(text) when there is none)."""
    n = len(text)
    # Prefix function: the longest proper prefix that is also a suffix gives the period.
    border = [0] * n
    k = 0
    for i in range(1, n):
        while k and text[i] != text[k]:
            k = border[k - 1]
        if text[i] == text[k]:
            k += 1
        border[i] = k
    return n - border[-1] if n else 0


def _is_weak(text: str, min_length: int) -> bool:
    return len(text) < min_length or len(set(text)) < MIN_DISTINCT or _period(text) <= len(text) // 2


def secret_key_problem(key: object, min_length: int) -> str | None:
    """Why key is unfit to sign sessions in production, or None when it is fine."""
    if key is None or key == "" or key == b"":
        return f"SECRET_KEY is missing: {FIX}"
    text = _as_text(key)
    lowered = text.lower()
    for published in _PUBLISHED_LONGEST_FIRST:
        if published in lowered:
            # A published value padded or repeated to length is still published; a random
            # key that merely contains a short word somewhere is not.
            rest = lowered.replace(published, "")
            if _is_weak(rest, min_length):
                if lowered == published:
                    return f"SECRET_KEY is a published default ({published!r}): anyone can forge sessions; {FIX}"
                return (
                    f"SECRET_KEY contains a published default ({published!r}), and what it adds is too short or "
                    f"simple to make it secret: anyone can forge sessions; {FIX}"
                )
    # Raw bytes (os.urandom(16), as Flask's docs once made keys) carry 8 bits each, twice a hex digit's:
    # min_length counts characters of text, so bytes that are not text need half as many.
    if isinstance(key, (bytes, bytearray)) and not all(32 <= byte < 127 for byte in key):
        needed = -(-min_length // 2)
        if len(key) < needed:
            return f"SECRET_KEY is too short ({len(key)} random bytes, at least {needed} needed): {FIX}"
    elif len(text) < min_length:
        return f"SECRET_KEY is too short ({len(text)} characters, at least {min_length} needed): {FIX}"
    if len(set(text)) < MIN_DISTINCT:
        return f"SECRET_KEY has too little variety ({len(set(text))} distinct characters): {FIX}"
    if _period(text) <= len(text) // 2:
        return f"SECRET_KEY is one short pattern repeated: {FIX}"
    return None


class CliRefusal(ConfigurationError, click.ClickException):
    """The refusal under the `flask` CLI (`flask run`): click prints it as one line, "Error: ...", not a traceback."""


# Apps `flask run --debug` loaded: still its development server's when a request thread (no click context of the
# command there) checks them again at their first request.
_made_for_dev_server: weakref.WeakSet[Flask] = weakref.WeakSet()


def _flask_cli_context() -> click.Context | None:
    """The click context while the `flask` CLI (a FlaskGroup) is loading the app, else None."""
    ctx = click.get_current_context(silent=True)
    return ctx if ctx is not None and isinstance(ctx.find_root().command, FlaskGroup) else None


def _under_dev_server() -> bool:
    """True while `flask run` is loading the app: Flask's development server, never production."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.command is run_command


def _under_cli_serving_nothing() -> bool:
    """True while the `flask` CLI loads the app for a command other than `flask run` (init-db, routes, shell,
    db upgrade, --help): the command serves no request, so a weak key or debug mode harms nothing there."""
    ctx = _flask_cli_context()
    return ctx is not None and ctx.command is not run_command and ctx.info_name != "run"


def _under_pytest() -> bool:
    """True in a pytest run's own process: its tests' apps, not a server one of them started."""
    return "pytest" in sys.modules


def _tests_way_out(spec: Spec) -> str:
    """How a test suite's app gets the testing exemption: TESTING set after Production(app) (a fixture's
    app.config.update) comes too late for the refusal at init."""
    env = " or set FLASK_TESTING=true in the tests' environment" if spec.app.env_config else ""
    return (
        "; in tests, turn TESTING on before Production(app) runs: pass it to the factory "
        f"(create_app({{'TESTING': True}})){env}"
    )


def refuse_unsafe(app: Flask, spec: Spec, *, late: bool = False) -> None:
    """Raise ConfigurationError when app would serve production traffic in debug mode or with a weak key.

    Testing apps are exempt so test suites can use fixed keys, and so is `flask run --debug`. So is the app as
    its factory makes it for a `flask` command other than `run` (`flask init-db` of Flask's tutorial, with its
    SECRET_KEY="dev"): servers that import it, and its first request (the late check), still refuse. late: the
    check of the app as loaded, after Production(app) passed it, so whatever fails the app set afterwards. Under
    pytest, the message also says how a test's app is exempt.
    """
    if not late:
        if _under_dev_server():
            _made_for_dev_server.add(app)
        elif _under_cli_serving_nothing():
            return
    problem = _unsafe_problem(app, spec, late=late)
    if problem is None:
        return
    if _under_pytest():
        problem += _tests_way_out(spec)
    raise CliRefusal(problem) if _flask_cli_context() is not None else ConfigurationError(problem)


def _unsafe_problem(app: Flask, spec: Spec, *, late: bool = False) -> str | None:
    """What makes app unfit to serve production traffic (see refuse_unsafe), or None."""
    if app.testing:
        return None
    if app.debug:
        if _under_dev_server() or app in _made_for_dev_server:
            return None
        if late:
            fix = "the app turned it on after Production(app): remove DEBUG from its config"
        elif get_debug_flag():  # FLASK_DEBUG, read as Flask reads it
            fix = "unset FLASK_DEBUG"
        else:  # FLASK_DEBUG would not help: the app's own config says DEBUG = True
            fix = "the app's config turns it on: remove DEBUG from it"
        return (
            f"debug mode is on in production: {fix} (the debugger runs arbitrary code for anyone who reaches "
            "it); for local development use `flask run --debug`"
        )
    problem = secret_key_problem(app.config.get("SECRET_KEY"), spec.security.secret_min_length)
    if problem and late:
        problem = problem.replace(FIX, LATE_FIX)
    if problem and not spec.app.env_config:
        # The usual fix would not reach the app: nothing loads FLASK_* variables into its config.
        problem = problem.replace(
            FIX, "app.env_config is off, so FLASK_SECRET_KEY is not read: set SECRET_KEY in the app's config, or "
            "turn app.env_config on"
        )
    if problem:
        return problem
    for fallback in app.config.get("SECRET_KEY_FALLBACKS") or ():
        problem = secret_key_problem(fallback, spec.security.secret_min_length)
        if problem:
            return problem.replace("SECRET_KEY", "a SECRET_KEY_FALLBACKS entry", 1)
    return None
