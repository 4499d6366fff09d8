"""`flaskprod serve` refuses to start an app with a weak SECRET_KEY or debug on: a clear message, a quick exit."""

from __future__ import annotations

import secrets
import subprocess
import time

import pytest

from tests.conftest import StartServer

pytestmark = pytest.mark.integration

APP = """
from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/")
def index():
    return "ok"
"""

WORKERS = 2
# Seconds to import a tiny app and give up; a server that is still running after this is restarting workers.
EXIT_WITHIN = 20.0

BAD_SECRETS = [
    pytest.param(None, ("missing",), id="missing"),
    pytest.param(secrets.token_hex(8), ("short",), id="short"),
    pytest.param("a" * 40, ("variety", "pattern", "repeat"), id="one-character"),
    pytest.param("0123456789" * 4, ("variety", "pattern", "repeat"), id="repeated-pattern"),
    pytest.param("hard-to-guess-string", ("published", "default"), id="guide-default"),
    pytest.param("hard-to-guess-string" + "1234567890ab", ("published", "default"), id="guide-default-padded"),
    pytest.param("changeme", ("published", "default"), id="changeme"),
]


def refused(serve_app: StartServer, env: dict[str, str | None]) -> str:
    """Start the app, wait for serve to give up on its own, and return everything it printed."""
    server = serve_app(APP, workers=WORKERS, env=env, wait=False)
    started = time.monotonic()
    try:
        code = server.proc.wait(EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        output = server.output()
        raise AssertionError(f"serve still running after {EXIT_WITHIN}s with an unsafe config:\n{output}") from None
    output = server.output()
    assert code != 0, f"serve exited 0 with an unsafe config:\n{output}"
    assert time.monotonic() - started < EXIT_WITHIN
    # One refusal, not a supervisor restarting workers that die at import.
    assert output.count("Booting worker") <= WORKERS, output
    assert "Traceback" not in output, f"a configuration error should be one line, not a traceback:\n{output}"
    return output


@pytest.mark.parametrize(("secret", "words"), BAD_SECRETS)
def test_serve_refuses_a_weak_secret_key(serve_app: StartServer, secret: str | None, words: tuple[str, ...]) -> None:
    output = refused(serve_app, {"FLASK_SECRET_KEY": secret})
    assert "SECRET_KEY" in output, output
    assert any(word in output.lower() for word in words), f"message does not say the key is {words[0]}:\n{output}"


def test_serve_refuses_debug_mode(serve_app: StartServer) -> None:
    output = refused(serve_app, {"FLASK_DEBUG": "1"})  # with a strong key: debug alone is the problem
    assert "debug" in output.lower(), output
