"""A streamed response that fails is an error to its client, not a body that ends as if whole; a whole stream still
ends cleanly. Gunicorn ends a failed chunked body without its last chunk; uWSGI's response has no length, so its
clean close looked like the end (curl exited 0): its connection is reset instead. A body that fails before its first
chunk gets Gunicorn's own 500 page, whole, and its access line says so, not that it was cut."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import StartServer
from tests.support import free_port, wait_for
from tests.test_integration_logs import MESSAGE, STATUS, URL_PATH, field
from tests.upstack import start_up, stop, write_app

pytestmark = pytest.mark.integration

APP = """
from flask import Flask, stream_with_context

from flaskprod import Production

app = Flask(__name__)
Production(app)

ROWS = 2000


@app.get("/failing")
def failing():
    @stream_with_context
    def rows():
        yield "first\\n" * 1000
        raise RuntimeError("failed mid-stream")

    return app.response_class(rows())


@app.get("/failing-at-once")
def failing_at_once():
    def rows():
        raise RuntimeError("failed before the first chunk")
        yield "never"

    return app.response_class(rows())


@app.get("/whole")
def whole():
    def rows():
        for n in range(ROWS):
            yield f"row {n}\\n"

    return app.response_class(rows())
"""

WHOLE = "".join(f"row {n}\n" for n in range(2000))
# What a client's read of a cut body raises: the chunked body unterminated, or the connection reset under it.
CUT = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)


def assert_cut(url: str) -> None:
    with pytest.raises(CUT):
        requests.get(url, timeout=15).content  # noqa: B018


@pytest.mark.parametrize("server_name", ["gunicorn", "uwsgi"])
def test_a_failed_stream_is_an_error_to_its_client_under_serve(serve_app: StartServer, server_name: str) -> None:
    server = serve_app(APP, args=("--server", server_name))
    assert_cut(server.url("/failing"))
    if server_name == "uwsgi":  # uWSGI sent the 200 before the body: cut like the rest
        assert_cut(server.url("/failing-at-once"))
    else:
        assert server.get("/failing-at-once").status_code == 500
    response = server.get("/whole")
    assert (response.status_code, response.text) == (200, WHOLE)


def test_a_stream_failing_before_its_first_chunk_is_logged_as_gunicorns_500(serve_app: StartServer) -> None:
    """Gunicorn answers its own 500 page, whole: the line said "500 ..., cut short after 0 bytes", a failure."""
    server = serve_app(APP, args=("--server", "gunicorn"))
    assert server.get("/failing-at-once").status_code == 500

    def access_line() -> dict[str, Any] | None:
        return next((r for r in server.json_lines() if field(r, URL_PATH) == "/failing-at-once"), None)

    line = wait_for(access_line, timeout=10, what="the access line of /failing-at-once")
    assert field(line, STATUS) == 500
    assert "cut short" not in field(line, MESSAGE), line
    # A stream cut mid-body is still logged as cut.
    assert_cut(server.url("/failing"))

    def failing_line() -> dict[str, Any] | None:
        return next((r for r in server.json_lines() if field(r, URL_PATH) == "/failing"), None)

    cut = wait_for(failing_line, timeout=10, what="the access line of /failing")
    assert field(cut, "event.outcome") == "failure" and "cut short after" in field(cut, MESSAGE), cut


def test_a_failed_stream_is_an_error_to_its_client_under_up_with_gunicorn(tmp_path: Path) -> None:
    """nginx ends its chunked reply without the last chunk when Gunicorn's chunked body ends unterminated."""
    write_app(tmp_path, APP)
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        stack.wait_ready()
        assert_cut(stack.url("/failing"))
        response = stack.get("/whole")
        assert (response.status_code, response.text) == (200, WHOLE)
    finally:
        stop(stack)
