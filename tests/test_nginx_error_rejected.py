"""Requests nginx rejects itself get the app's page, with the request id and the security headers, JSON or HTML by the
app's rule where an Accept header was read.

Once the Host chose the app's server: a malformed header, a header past large_client_header_buffers (nginx's 494,
sent as 400), a malformed chunked body, an unsupported Transfer-Encoding (501). Before a Host header chose it: a bad
request line (400), a URI past large_client_header_buffers (414), HTTP/2.0 over plain HTTP (505), HTTP/1.1 with no
Host (400), a malformed or oversized header before the Host (400).

They were nginx's bare page. It answers those before a Host in the default server, whose error_page could not send
them to a named location (no URI read: "empty URI in redirect to named location", a 500), and 501 had no
error_page. The default server still closes every request for a host name it does not serve (444), an error's too.

A TRACE, which nginx refuses (405) before any location, the app's routes too, had the static files' `Allow: GET,
HEAD`: false for a route that takes POST. It has no Allow, as nginx sent before."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from flaskprod.render.nginx import TlsFiles
from tests.test_nginx_error_pages import SECURITY_HEADERS, nginx_alone, self_signed
from tests.test_render_nginx import context, make_spec, rendered

JSON = b"Accept: application/json\r\n"
MESSAGES = {
    400: "The browser (or proxy) sent a request that this server could not understand.",
    405: "The method is not allowed for the requested URL.",
    414: "The length of the requested URL exceeds the capacity limit for this server. The request cannot be processed.",
    501: "The server does not support the action requested by the browser.",
    505: "The server does not support the HTTP protocol version used in the request.",
}
TITLES = {400: "Bad Request", 405: "Method Not Allowed", 414: "Request URI Too Long", 505: "HTTP Version Not Supported"}


@pytest.fixture(scope="module")
def nginx_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """nginx with no app server behind it, serving 127.0.0.1 and a static file."""
    with nginx_alone(tmp_path_factory.mktemp("nginx")) as port:
        yield port


def raw(port: int, request: bytes) -> bytes:
    """What nginx sends back for request, read to the close that follows each answer here (or comes instead)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        for _ in range(1000):  # bounded: nginx closes after each of these
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], str]:
    answer = raw(port, request).decode("latin-1")
    assert answer, "closed without an answer"
    head, _, body = answer.partition("\r\n\r\n")
    status_line, *lines = head.split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def assert_apps_page(port: int, request: bytes, status: int, *, as_json: bool) -> dict[str, str]:
    """That request got the app's page for status, as JSON or HTML; its headers."""
    got, headers, body = exchange(port, request)
    assert got == status, body
    rid = headers.get("x-request-id")
    assert rid, headers
    assert all(name.lower() in headers for name in SECURITY_HEADERS), headers
    assert "nginx" not in body
    if as_json:
        assert headers["content-type"] == "application/json", body
        assert json.loads(body) == {"error": {"status": status, "message": MESSAGES[status], "request_id": rid}}
    else:
        assert headers["content-type"] == "text/html; charset=utf-8", body
        assert f"<title>{status} {TITLES[status]}</title>" in body and f"<code>{rid}</code>" in body
    return headers


# Rejected once the Host chose the app's server: its error_page, at server level and in location /.
@pytest.mark.integration
def test_a_malformed_header_gets_the_apps_400(nginx_port: int) -> None:
    request = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nNo colon here\r\n\r\n"
    assert_apps_page(nginx_port, request, 400, as_json=True)
    request = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\nNo colon here\r\n\r\n"
    assert_apps_page(nginx_port, request, 400, as_json=False)


@pytest.mark.integration
def test_a_header_past_nginxs_buffers_gets_the_apps_400(nginx_port: int) -> None:
    # nginx's 494 ("Request Header Or Cookie Too Large"), which it sends as 400: still 400, on the app's page.
    cookie = b"Cookie: session=" + b"x" * 9000 + b"\r\n"
    request = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n" + cookie + b"\r\n"
    assert_apps_page(nginx_port, request, 400, as_json=True)


@pytest.mark.integration
def test_a_malformed_chunked_body_gets_the_apps_400(nginx_port: int) -> None:
    # Read in location / as nginx buffers the body for the app server: its error_page there names the 400 too.
    request = b"POST /api/items HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n0\r\n\r\n"
    assert_apps_page(nginx_port, request, 400, as_json=True)


@pytest.mark.integration
def test_a_bad_request_line_gets_the_apps_400(nginx_port: int) -> None:
    # No header read: HTML, as for a client that sent no Accept.
    assert_apps_page(nginx_port, b"\x16\x03\x01\x02\x00 not http\r\n\r\n", 400, as_json=False)


@pytest.mark.integration
def test_a_uri_past_the_header_buffers_gets_the_apps_414(nginx_port: int) -> None:
    request = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + JSON + b"\r\n"
    assert_apps_page(nginx_port, request, 414, as_json=False)


@pytest.mark.integration
def test_http2_over_plain_http_gets_the_apps_505(nginx_port: int) -> None:
    assert_apps_page(nginx_port, b"GET /page HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505, as_json=False)


@pytest.mark.integration
def test_requests_rejected_before_their_host_get_the_apps_400_by_their_accept(nginx_port: int) -> None:
    no_host = b"GET /page HTTP/1.1\r\n"
    assert_apps_page(nginx_port, no_host + JSON + b"\r\n", 400, as_json=True)
    assert_apps_page(nginx_port, no_host + b"Accept: text/html\r\n\r\n", 400, as_json=False)
    malformed_first = no_host + JSON + b"No colon here\r\nHost: 127.0.0.1\r\n\r\n"
    assert_apps_page(nginx_port, malformed_first, 400, as_json=True)
    # nginx's 494, sent as 400.
    oversized_first = no_host + JSON + b"Cookie: session=" + b"x" * 9000 + b"\r\nHost: 127.0.0.1\r\n\r\n"
    assert_apps_page(nginx_port, oversized_first, 400, as_json=True)


@pytest.mark.integration
def test_an_unsupported_transfer_encoding_gets_the_apps_501(nginx_port: int) -> None:
    # nginx reads it after the Host: on HTTP/1.0, with no Host needed, a Transfer-Encoding is a 400.
    request = b"POST /api/items HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n"
    assert_apps_page(nginx_port, request, 501, as_json=True)


@pytest.mark.integration
def test_trace_gets_the_apps_405_with_no_allow(nginx_port: int) -> None:
    # nginx refuses TRACE before any location: the app's routes take their own methods, so no list is true for all.
    trace = b"TRACE /api/items HTTP/1.1\r\nHost: 127.0.0.1\r\n" + JSON + b"\r\n"
    assert "allow" not in assert_apps_page(nginx_port, trace, 405, as_json=True)
    # With no Host (HTTP/1.0), in the default server.
    assert "allow" not in assert_apps_page(nginx_port, b"TRACE /page HTTP/1.0\r\n\r\n", 405, as_json=False)
    # A static file's 405 still names the methods it takes.
    post = b"POST /static/site.css HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n" + JSON
    assert assert_apps_page(nginx_port, post + b"\r\n", 405, as_json=True)["allow"] == "GET, HEAD"


@pytest.mark.integration
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /page HTTP/1.1\r\nHost: other.example\r\n\r\n",
        b"GET /page HTTP/1.0\r\n\r\n",
        # The default server's error pages, asked for by a client.
        b"GET /flaskprod_error_json HTTP/1.1\r\nHost: other.example\r\n\r\n",
        b"GET /flaskprod_error_html HTTP/1.0\r\n\r\n",
        # An error of a request that named a host this site does not serve.
        b"GET /page HTTP/1.1\r\nHost: other.example\r\nNo colon here\r\n\r\n",
        b"GET /page HTTP/1.1\r\nHost: bad/name\r\n\r\n",
        b"POST /page HTTP/1.1\r\nHost: other.example\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"TRACE /page HTTP/1.1\r\nHost: other.example\r\n\r\n",
    ],
)
def test_requests_for_hosts_not_served_are_closed_without_an_answer(nginx_port: int, request_bytes: bytes) -> None:
    assert raw(nginx_port, request_bytes) == b""


def default_servers(text: str) -> list[str]:
    """The text of each default server block."""
    starts = [text.rindex("    server {", 0, match.start()) for match in re.finditer(" default_server;", text)]
    return [text[start : text.index("\n    }\n", start)] for start in starts]


def test_with_tls_the_https_default_servers_pages_carry_hsts_and_the_plain_ones_not(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    ctx = dataclasses.replace(context(tmp_path), tls=TlsFiles(port=18443, cert=cert, key=key))
    plain, https = default_servers(rendered(make_spec(), ctx))
    assert "location = /flaskprod_error_json {" in plain and "Strict-Transport-Security" not in plain
    assert https.count("add_header Strict-Transport-Security") == 3  # the server's, and each page's own


def test_with_the_apps_error_pages_off_the_default_server_only_closes(tmp_path: Path) -> None:
    (server,) = default_servers(rendered(make_spec(**{"security.error_pages": "false"}), context(tmp_path)))
    assert server.split("\n")[-1].strip() == "return 444;" and "error_page" not in server
