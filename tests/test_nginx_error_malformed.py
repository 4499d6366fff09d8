"""A request nginx rejects itself once the Host has chosen the app's server (a malformed header, a header past
large_client_header_buffers, a malformed chunked body) gets the app's 400 page, with the request id and the security
headers, as JSON or HTML by the app's rule.

They were nginx's bare page (`<center>nginx</center>`). A bad request line (400, 414) or a request with no Host is
answered in the default server: tests/test_nginx_error_unrouted.py."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
from collections.abc import Iterator

import pytest

from flaskprod.render import render_nginx
from flaskprod.sizing import derive
from tests.support import free_port, running, wait_for
from tests.test_nginx_error_pages import SECURITY_HEADERS, listening
from tests.test_render_nginx import MACHINE, context, make_spec

BAD_REQUEST = "The browser (or proxy) sent a request that this server could not understand."


@pytest.fixture(scope="module")
def nginx_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """nginx with no app server behind it."""
    tmp_path = tmp_path_factory.mktemp("nginx")
    spec = make_spec()
    port = free_port()
    ctx = dataclasses.replace(context(tmp_path), port=port)
    for name, text in render_nginx(spec, derive(spec, MACHINE), ctx).items():
        (tmp_path / name).write_text(text)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with (tmp_path / "nginx.err").open("w") as log, running(
        [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"], stdout=log
    ):
        wait_for(lambda: listening(port), what=f"nginx on {port}")
        yield port


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], str]:
    """Send request as it is over a raw socket; nginx's status, headers (names lower-cased) and body, read to the
    close that follows a 400."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        for _ in range(1000):  # bounded: nginx closes after a 400
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.decode("latin-1").partition("\r\n\r\n")
    status_line, *lines = head.split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def assert_apps_400(answer: tuple[int, dict[str, str], str], *, as_json: bool) -> None:
    status, headers, body = answer
    assert status == 400, body
    rid = headers.get("x-request-id")
    assert rid, headers
    assert all(name.lower() in headers for name in SECURITY_HEADERS), headers
    assert "nginx" not in body
    if as_json:
        assert headers["content-type"] == "application/json", body
        assert json.loads(body) == {"error": {"status": 400, "message": BAD_REQUEST, "request_id": rid}}
    else:
        assert headers["content-type"] == "text/html; charset=utf-8", body
        assert "<title>400 Bad Request</title>" in body and f"<code>{rid}</code>" in body


@pytest.mark.integration
def test_a_malformed_header_gets_the_apps_400(nginx_port: int) -> None:
    request = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nNo colon here\r\n\r\n"
    assert_apps_400(exchange(nginx_port, request), as_json=True)
    request = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\nNo colon here\r\n\r\n"
    assert_apps_400(exchange(nginx_port, request), as_json=False)


@pytest.mark.integration
def test_a_header_past_nginxs_buffers_gets_the_apps_400(nginx_port: int) -> None:
    # nginx's 494 ("Request Header Or Cookie Too Large"), which it sends as 400: still 400, on the app's page.
    cookie = b"Cookie: session=" + b"x" * 9000 + b"\r\n"
    request = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n" + cookie + b"\r\n"
    assert_apps_400(exchange(nginx_port, request), as_json=True)


@pytest.mark.integration
def test_a_malformed_chunked_body_gets_the_apps_400(nginx_port: int) -> None:
    # Read in location / as nginx buffers the body for the app server: its error_page there names the 400 too.
    request = b"POST /api/items HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n0\r\n\r\n"
    assert_apps_400(exchange(nginx_port, request), as_json=True)
