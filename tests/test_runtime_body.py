"""A chunked request body is held to MAX_CONTENT_LENGTH: 413, not a body cut to the limit and answered 200."""

from __future__ import annotations

import io
import secrets

import pytest
from flask import Flask, request

from flaskprod import Production
from flaskprod.spec import Spec

LIMIT = 1000


def make_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    Production(app, spec=Spec().replace(**{"proxy.max_body_size": str(LIMIT)}))

    @app.post("/data")
    def data() -> dict[str, int]:
        return {"n": len(request.get_data())}

    @app.post("/form")
    def form() -> dict[str, int]:
        return {"n": len(request.form.get("x", ""))}

    return app


def post_chunked(app: Flask, path: str, body: bytes) -> tuple[str, bytes]:
    """body as a server that decodes chunked transfer hands it on: no CONTENT_LENGTH, the input terminated."""
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "localhost", "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
    }
    status: list[str] = []
    answer = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))  # type: ignore[arg-type]
    return status[0], answer


@pytest.mark.parametrize("path", ["/data", "/form"])
def test_a_chunked_body_one_byte_over_the_limit_is_413(path: str) -> None:
    status, _ = post_chunked(make_app(), path, b"x=" + b"a" * (LIMIT - 1))
    assert status.startswith("413")


@pytest.mark.parametrize("path", ["/data", "/form"])
def test_a_chunked_body_at_the_limit_is_read_whole(path: str) -> None:
    status, answer = post_chunked(make_app(), path, b"x=" + b"a" * (LIMIT - 2))
    assert status.startswith("200")
    assert answer == {"/data": b'{"n":1000}\n', "/form": b'{"n":998}\n'}[path]
