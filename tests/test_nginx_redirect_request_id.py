"""With TLS on, the plain-HTTP server's 308 to HTTPS carries the request id, as the app's pages and nginx's own errors
do, and its access line logs the same id: nginx's `return 308` sent it bare, so a redirect that went wrong (a loop,
a wrong port) could not be matched to its log line by the id the client was given."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flaskprod.render.nginx import TlsFiles
from tests.support import free_port, wait_for
from tests.test_nginx_error_pages import nginx_alone, self_signed
from tests.test_nginx_error_rejected import exchange


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """nginx with TLS on and no app server behind it: its plain-HTTP port and its access log."""
    tmp_path = tmp_path_factory.mktemp("nginx")
    cert, key = self_signed(tmp_path)
    with nginx_alone(tmp_path, tls=TlsFiles(port=free_port(), cert=cert, key=key)) as port:
        yield port, tmp_path / "access.log"


def logged_ids(access_log: Path, uri: str) -> list[str]:
    """The request ids of the access lines for uri (nginx writes its buffer within a second)."""
    text = access_log.read_text() if access_log.exists() else ""
    return [line["request_id"] for line in map(json.loads, text.splitlines()) if line["uri"] == uri]


@pytest.mark.integration
def test_the_redirect_to_https_carries_the_request_id_its_access_line_logs(plain: tuple[int, Path]) -> None:
    port, access_log = plain
    status, headers, _ = exchange(port, b"GET /to-https?q=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 308 and headers["location"].endswith("/to-https?q=1"), headers
    rid = headers.get("x-request-id")
    assert rid and len(rid) == 32, headers  # nginx's own $request_id: 32 hex digits
    assert "strict-transport-security" not in headers  # still none over plain HTTP (RFC 6797 7.2)
    assert wait_for(lambda: logged_ids(access_log, "/to-https?q=1"), timeout=10, what="the access line") == [rid]


@pytest.mark.integration
def test_the_redirect_keeps_a_callers_own_request_id(plain: tuple[int, Path]) -> None:
    port, access_log = plain
    own = "trace-0123456789abcdef"
    request = f"GET /traced HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: {own}\r\nConnection: close\r\n\r\n"
    status, headers, _ = exchange(port, request.encode())
    assert (status, headers.get("x-request-id")) == (308, own), headers
    assert wait_for(lambda: logged_ids(access_log, "/traced"), timeout=10, what="the access line") == [own]
