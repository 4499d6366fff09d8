"""With TLS on, the plain-HTTP server that redirects the app's host to HTTPS answers the requests nginx rejects there
(a malformed header, an unsupported Transfer-Encoding, TRACE) with the app's pages, the request id and the security
headers, as the HTTPS server does; without HSTS, which a browser ignores over plain HTTP and RFC 6797 (7.2) says a
server must not send there.

They were nginx's bare page (`<center>nginx</center>`): that server had no error_page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flaskprod.render.nginx import TlsFiles
from tests.support import free_port
from tests.test_nginx_error_pages import nginx_alone, self_signed
from tests.test_nginx_error_rejected import JSON, assert_apps_page, exchange


@pytest.fixture(scope="module")
def plain_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """nginx with TLS on and no app server behind it: its plain-HTTP port, which serves 127.0.0.1 by redirecting."""
    tmp_path = tmp_path_factory.mktemp("nginx")
    cert, key = self_signed(tmp_path)
    with nginx_alone(tmp_path, tls=TlsFiles(port=free_port(), cert=cert, key=key)) as port:
        yield port


def assert_plain_apps_page(port: int, request: bytes, status: int, *, as_json: bool) -> dict[str, str]:
    headers = assert_apps_page(port, request, status, as_json=as_json)
    assert "strict-transport-security" not in headers, headers
    return headers


@pytest.mark.integration
def test_the_app_host_over_plain_http_is_still_redirected(plain_port: int) -> None:
    status, headers, _ = exchange(plain_port, b"GET /page?q=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 308 and headers["location"].startswith("https://127.0.0.1:"), headers
    assert headers["location"].endswith("/page?q=1") and "strict-transport-security" not in headers


@pytest.mark.integration
def test_a_malformed_header_over_plain_http_gets_the_apps_400_without_hsts(plain_port: int) -> None:
    request = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\n" + JSON + b"No colon here\r\n\r\n"
    assert_plain_apps_page(plain_port, request, 400, as_json=True)
    request = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\nNo colon here\r\n\r\n"
    assert_plain_apps_page(plain_port, request, 400, as_json=False)
    # A header past nginx's buffers (its 494, sent as 400).
    cookie = b"Cookie: session=" + b"x" * 9000 + b"\r\n"
    assert_plain_apps_page(plain_port, b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\n" + JSON + cookie + b"\r\n", 400,
                           as_json=True)  # fmt: skip


@pytest.mark.integration
def test_an_unsupported_transfer_encoding_over_plain_http_gets_the_apps_501_without_hsts(plain_port: int) -> None:
    request = b"POST /api/items HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n"
    assert_plain_apps_page(plain_port, request, 501, as_json=True)


@pytest.mark.integration
def test_trace_over_plain_http_gets_the_apps_405_with_no_allow(plain_port: int) -> None:
    trace = b"TRACE /page HTTP/1.1\r\nHost: 127.0.0.1\r\n" + JSON + b"\r\n"
    assert "allow" not in assert_plain_apps_page(plain_port, trace, 405, as_json=True)
