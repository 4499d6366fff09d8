"""With TLS on, what the plain-HTTP server answers itself (its 308 to HTTPS, a Let's Encrypt challenge's file) carries
the security headers the app's Production(app) and nginx's own error pages send, the same values from the same list
(runtime/headers.py's security_headers); without HSTS, which RFC 6797 (7.2) says a server must not send there.

The 308 carried the request id alone: a first plain-HTTP visit got no X-Content-Type-Options, X-Frame-Options,
Referrer-Policy or Content-Security-Policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from flaskprod.render.nginx import TlsFiles
from flaskprod.runtime.headers import security_headers
from flaskprod.spec import Spec
from tests.buildkit import run_tool, tool
from tests.support import free_port
from tests.test_nginx_error_pages import nginx_alone, self_signed, write
from tests.test_nginx_error_rejected import exchange
from tests.test_render_nginx import context, make_spec, nginx_test, rendered

# Every header security_headers can send: the spec's Content-Security-Policy is off by default.
SPEC_FLAGS = {"security.content_security_policy": "default-src 'self'; frame-ancestors 'none'"}
CHALLENGE = "token-1.thumbprint"


def expected(spec: Spec) -> dict[str, str]:
    """The security headers the app sends on every answer, as a parsed response's {lower-case name: value}."""
    return {name.lower(): value for name, value in security_headers(spec)}


def tls_files(tmp_path: Path, webroot: Path | None = None) -> TlsFiles:
    cert, key = self_signed(tmp_path)
    return TlsFiles(port=free_port(), cert=cert, key=key, acme_webroot=str(webroot) if webroot else None)


@pytest.fixture(scope="module")
def plain_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """nginx with TLS and an ACME webroot holding one challenge, no app server behind it: its plain-HTTP port."""
    tmp_path = tmp_path_factory.mktemp("nginx")
    webroot = tmp_path / "webroot"
    (webroot / ".well-known" / "acme-challenge").mkdir(parents=True)
    (webroot / ".well-known" / "acme-challenge" / "token-1").write_text(CHALLENGE)
    with nginx_alone(tmp_path, make_spec(**SPEC_FLAGS), tls=tls_files(tmp_path, webroot)) as port:
        yield port


def assert_security_headers(headers: dict[str, str]) -> None:
    wanted = expected(make_spec(**SPEC_FLAGS))
    assert len(wanted) == 4 and "content-security-policy" in wanted  # the test covers every one
    assert {name: headers.get(name) for name in wanted} == wanted, headers
    assert "strict-transport-security" not in headers, headers  # never over plain HTTP (RFC 6797 7.2)
    assert headers.get("x-request-id"), headers


@pytest.mark.integration
def test_the_redirect_to_https_carries_the_apps_security_headers(plain_port: int) -> None:
    status, headers, _ = exchange(plain_port, b"GET /page?q=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 308 and headers["location"].endswith("/page?q=1"), headers
    assert_security_headers(headers)


@pytest.mark.integration
def test_a_challenge_file_and_a_missing_one_carry_them_too(plain_port: int) -> None:
    request = b"GET /.well-known/acme-challenge/token-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    status, headers, body = exchange(plain_port, request)
    assert (status, body) == (200, CHALLENGE), headers
    assert_security_headers(headers)
    request = b"GET /.well-known/acme-challenge/none HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    status, headers, _ = exchange(plain_port, request)
    assert status == 404, headers
    assert_security_headers(headers)


@pytest.mark.parametrize("flags", [SPEC_FLAGS, {"security.headers": "false"}], ids=["csp", "no-security-headers"])
def test_nginx_and_gixy_accept_the_plain_servers_headers(tmp_path: Path, flags: dict[str, str]) -> None:
    spec = make_spec(**flags)
    ctx = dataclasses.replace(context(tmp_path), tls=tls_files(tmp_path, tmp_path / "webroot"))
    text = rendered(spec, ctx)
    conf = write(tmp_path, text)
    result = nginx_test(tmp_path)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    if flags is SPEC_FLAGS:  # gixy-ng wants HSTS over HTTPS, which security.headers = false turns off too
        run_tool([tool("gixy"), str(conf)])
    # The plain server's own headers (before its locations): with security.headers off the app sends none, and
    # neither does the redirect.
    plain = text[text.index("# Plain HTTP only redirects") :]
    plain = plain[: plain.index("location ")]
    assert ("X-Frame-Options" in plain) == (flags != {"security.headers": "false"}), plain
