"""An exception a streamed response raises is logged once, by the app with the request's id, under either server;
one the app did not log (its body's close() failing, as the server calls it) is still the server's to log."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from tests.conftest import Server, StartServer
from tests.support import readable, wait_for

pytestmark = pytest.mark.integration

APP = """
from flask import Flask, stream_with_context

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/stream")
def stream():
    @stream_with_context
    def failing_rows():
        yield "first\\n"
        raise RuntimeError("failed mid-stream")

    return app.response_class(failing_rows())


class ClosingFails:
    def __iter__(self):
        yield b"whole\\n"

    def close(self):
        raise RuntimeError("failed closing the stream")


@app.get("/closing")
def closing():
    return app.response_class(ClosingFails())
"""

# A frame of the view's generator: once in each traceback of its failure, whoever printed it.
FAILING_FRAME = ", in failing_rows"
# The line of close() that fails, in the server's traceback of it.
SERVER_ONLY = 'raise RuntimeError("failed closing the stream")'


def tracebacks_of_the_stream(server: Server) -> tuple[int, int]:
    """How many tracebacks of the view's failure are on stdout (the app's log) and on stderr (the server's)."""
    return readable(server.stdout()).count(FAILING_FRAME), readable(server.stderr()).count(FAILING_FRAME)


def app_record_has(server: Server, rid: str, log_format: str) -> bool:
    """Whether the app's log holds its record of the failure with the request's id."""
    if log_format == "text":
        return any(f"failed mid-stream [request_id={rid}]" in line for line in server.stdout().splitlines())
    for line in server.stdout().splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        if record.get("http", {}).get("request", {}).get("id") == rid and FAILING_FRAME in str(record.get("error")):
            return True
    return False


@pytest.mark.parametrize(
    ("server_name", "log_format"), [("gunicorn", "json"), ("gunicorn", "text"), ("uwsgi", "json"), ("uwsgi", "text")]
)
def test_a_streamed_failure_is_logged_once_with_its_request_id(
    serve_app: StartServer, server_name: str, log_format: str
) -> None:
    server = serve_app(APP, env={"FLASKPROD_LOGGING__FORMAT": log_format}, args=("--server", server_name))
    response = server.get("/stream", stream=True, headers={"X-Request-ID": uuid.uuid4().hex})
    rid = response.headers["X-Request-ID"]
    # Cut short, not ended as if whole: Gunicorn's chunked body unterminated, uWSGI's connection reset.
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        response.content  # noqa: B018
    wait_for(lambda: app_record_has(server, rid, log_format), timeout=10, what="the app's record of the failure")

    # The server logs a failure the app did not: its record, on the same stream after any of the first failure's,
    # says that one would have been written by now.
    assert server.get("/closing").text == "whole\n"
    wait_for(lambda: SERVER_ONLY in readable(server.stderr()), timeout=10, what="the server's record of close()")

    assert tracebacks_of_the_stream(server) == (1, 0), server.output()
    assert "failed closing the stream" not in server.stdout()  # the app's layer never saw it
