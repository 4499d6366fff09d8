"""A chunked request body under `flaskprod serve`, with no nginx in front to read it first: it reaches the app whole,
held to the app's MAX_CONTENT_LENGTH, under uWSGI as under Gunicorn."""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Iterator

import pytest

from tests.conftest import StartServer

pytestmark = pytest.mark.integration

UPLOAD_APP = """
from flask import Flask, jsonify, request

from flaskprod import Production

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
Production(app)


@app.post("/upload")
def upload():
    return jsonify(size=len(request.get_data()), form=sorted(request.form))


@app.post("/form")
def form():
    return jsonify(fields=sorted(request.form), note=len(request.form.get("note", "")))
"""


def chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def post_chunked(port: int, path: str, body: bytes, content_type: str = "application/octet-stream") -> tuple[int, str]:
    """POST body with Transfer-Encoding: chunked (no Content-Length), as a client streaming an upload sends it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        # The server may answer (413) and close before the body is all sent: its answer is read, as curl reads it.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request("POST", path, body=chunks(body), headers={"Content-Type": content_type}, encode_chunked=True)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["uwsgi", "gunicorn"])
def test_a_chunked_body_reaches_the_app_and_is_held_to_its_limit(serve_app: StartServer, kind: str) -> None:
    # Facing clients, no nginx reads the chunked body first: uWSGI's HTTP socket passed it on as an empty body,
    # so the view answered 200 on data it never got.
    server = serve_app(UPLOAD_APP, args=("--server", kind))
    status, body = post_chunked(server.port, "/upload", b"x" * 50_000)
    assert (status, body.strip()) == (200, '{"form":[],"size":50000}'), server.output()
    note = "note=" + "y" * 30_000
    status, body = post_chunked(server.port, "/form", note.encode(), "application/x-www-form-urlencoded")
    assert (status, body.strip()) == (200, '{"fields":["note"],"note":30000}'), server.output()
    status, body = post_chunked(server.port, "/upload", b"x" * 70_000)
    assert status == 413, body
    # The server goes on answering: the next request is served whole.
    status, body = post_chunked(server.port, "/upload", b"z" * 10)
    assert (status, body.strip()) == (200, '{"form":[],"size":10}'), server.output()
