"""nginx's own errors (a body past the limit, the app server down or failing, the rate limit) answer as the app's
error pages do: JSON or HTML by the same rule, with the request id and the security headers the app sends.

They were nginx's own HTML page (`<center>nginx</center>`) for every client, a JSON one too, with no X-Request-ID
and none of the app's security headers."""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from flaskprod.render import render_nginx
from flaskprod.render.nginx import TlsFiles, mime_types
from flaskprod.sizing import derive
from flaskprod.spec import Spec
from tests.buildkit import run_tool, tool
from tests.support import free_port, running, wait_for
from tests.test_render_nginx import MACHINE, context, make_spec, nginx_test, rendered
from tests.upstack import UpStack, start_up, stop, write_app

JSON_CLIENT = {"Accept": "application/json, text/plain, */*"}  # axios's
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
EVENT_SOURCE = {"Accept": "text/event-stream"}
SECURITY_HEADERS = ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")
DESCRIPTIONS = {
    404: (
        "Not Found",
        "The requested URL was not found on the server. If you entered the URL manually please check your spelling"
        " and try again.",
    ),
    405: ("Method Not Allowed", "The method is not allowed for the requested URL."),
    413: ("Request Entity Too Large", "The data value transmitted exceeds the capacity limit."),
    429: ("Too Many Requests", "This user has exceeded an allotted request count. Try again later."),
    502: ("Bad Gateway", "The proxy server received an invalid response from an upstream server."),
}
# The worker answering /crash dies mid-request: nginx reads no response from the app server, as when it is down.
CRASH_APP = """
import os

from flask import Flask, jsonify, request

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.post("/upload")
def upload():
    return jsonify(size=len(request.get_data()))


@app.get("/crash")
@app.get("/api/crash")
def crash():
    os._exit(1)


@app.get("/flaskprod-error.<kind>")
def own_route(kind):
    return {"route": "the app's", "kind": kind}
"""


def assert_json_page(response: requests.Response, code: int) -> None:
    assert response.status_code == code, response.text
    assert response.headers["Content-Type"] == "application/json", response.text
    rid = response.headers.get("X-Request-ID")
    assert rid, response.headers
    assert response.json() == {"error": {"status": code, "message": DESCRIPTIONS[code][1], "request_id": rid}}
    assert all(name in response.headers for name in SECURITY_HEADERS), response.headers


def assert_html_page(response: requests.Response, code: int) -> None:
    assert response.status_code == code, response.text
    assert response.headers["Content-Type"] == "text/html; charset=utf-8", response.text
    rid = response.headers.get("X-Request-ID")
    assert rid, response.headers
    name, message = DESCRIPTIONS[code]
    assert f"<title>{code} {name}</title>" in response.text
    assert f"<p>{message}</p><p>Request id: <code>{rid}</code></p>" in response.text
    assert "nginx" not in response.text
    assert all(name in response.headers for name in SECURITY_HEADERS), response.headers


@pytest.fixture(params=["gunicorn", "uwsgi"])
def crash_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UpStack]:
    write_app(tmp_path, CRASH_APP)
    stack = start_up(tmp_path, request.param, free_port(), "--workers", "1", "--set", "proxy.max_body_size=10k")
    try:
        stack.wait_ready()
        yield stack
    finally:
        stop(stack)


@pytest.mark.integration
def test_nginx_answers_its_errors_with_the_apps_pages_under_up(crash_stack: UpStack) -> None:
    stack = crash_stack
    too_large = b"x" * 20_000
    # A body past the limit: nginx's 413, as JSON for a JSON client (keeping its own valid request id) ...
    mine = {**JSON_CLIENT, "X-Request-ID": "client-trace-0123456789"}
    response = requests.post(stack.url("/upload"), data=too_large, headers=mine, timeout=15)
    assert_json_page(response, 413)
    assert response.headers["X-Request-ID"] == "client-trace-0123456789"
    # ... as HTML for a browser, and as JSON for a JSON body or a path under /api/, as the app chooses.
    assert_html_page(requests.post(stack.url("/upload"), data=too_large, headers=BROWSER, timeout=15), 413)
    as_json = requests.post(stack.url("/upload"), json={"x": "x" * 20_000}, headers=BROWSER, timeout=15)
    assert_json_page(as_json, 413)

    # The app server gone mid-request: nginx's 502, the same way; an EventSource's request too (its own location).
    assert_json_page(stack.get("/crash", headers=JSON_CLIENT), 502)
    assert_html_page(stack.get("/crash", headers=BROWSER), 502)
    assert_json_page(stack.get("/api/crash", headers=BROWSER), 502)
    assert_html_page(stack.get("/crash", headers=EVENT_SOURCE), 502)

    # nginx's error pages are no URLs: the app's routes at their former paths are the app's.
    for kind in ("json", "html"):
        assert stack.get(f"/flaskprod-error.{kind}").json() == {"route": "the app's", "kind": kind}

    # The same headers as the app's own error page.
    apps = stack.get("/nowhere", headers=JSON_CLIENT)
    assert apps.status_code == 404 and set(apps.json()["error"]) == {"status", "message", "request_id"}
    for name in (*SECURITY_HEADERS, "X-Request-ID"):
        assert name in apps.headers
    run_tool([tool("gixy"), str(stack.run_dir / "nginx.conf")])


@pytest.mark.integration
def test_with_no_app_server_and_past_the_rate_limit_nginx_answers_the_apps_pages(tmp_path: Path) -> None:
    # No app server at the socket at all; one request a minute per client, with no burst.
    spec = make_spec(**{"proxy.rate_limit": "1r/m", "proxy.rate_limit_burst": "0"})
    with nginx_alone(tmp_path, spec) as port:
        url = f"http://127.0.0.1:{port}/page"
        first = requests.get(url, headers=JSON_CLIENT, timeout=5)
        assert_json_page(first, 502)
        assert_json_page(requests.get(url, headers=JSON_CLIENT, timeout=5), 429)
        assert_html_page(requests.get(url, headers=BROWSER, timeout=5), 429)
        # The error locations are named ones: no URL reaches them, and a path like their names goes to the app, past
        # the rate limit here.
        for path in ("/flaskprod-error.json", "/@flaskprod_error_json", "/flaskprod_error_json"):
            assert_html_page(requests.get(f"http://127.0.0.1:{port}{path}", headers=BROWSER, timeout=5), 429)


@pytest.mark.integration
def test_nginx_answers_a_missing_or_posted_static_file_with_the_apps_pages(tmp_path: Path) -> None:
    # They were nginx's page (`<center>nginx</center>`), with no request id, security headers or Allow, where the
    # app's static route answers its own 404 and 405.
    with nginx_alone(tmp_path) as port:
        missing = f"http://127.0.0.1:{port}/static/missing.css"
        assert_json_page(requests.get(missing, headers=JSON_CLIENT, timeout=5), 404)
        assert_html_page(requests.get(missing, headers=BROWSER, timeout=5), 404)
        assert requests.get(f"http://127.0.0.1:{port}/static/site.css", timeout=5).text == "body {}"
        posted = requests.post(f"http://127.0.0.1:{port}/static/site.css", headers=JSON_CLIENT, timeout=5)
        assert_json_page(posted, 405)
        assert posted.headers["Allow"] == "GET, HEAD"
        assert "Allow" not in requests.get(missing, headers=JSON_CLIENT, timeout=5).headers


@contextmanager
def nginx_alone(
    tmp_path: Path, spec: Spec | None = None, *, edit: Callable[[str], str] | None = None, **ctx: Any
) -> Iterator[int]:
    """nginx as rendered for spec (make_spec()'s by default) with no app server behind it, running from tmp_path with
    a static file (static/site.css) until the block ends: its port. ctx: NginxContext fields beside the port; edit
    changes nginx.conf before it starts."""
    spec = spec or make_spec()
    port = free_port()
    # Workers that can read tmp_path, as `up` runs them: as root's, when the master is root's.
    user = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None
    context_here = dataclasses.replace(context(tmp_path), port=port, user=user, **ctx)
    for name, text in render_nginx(spec, derive(spec, MACHINE), context_here).items():
        (tmp_path / name).write_text(edit(text) if edit is not None and name == "nginx.conf" else text)
    (tmp_path / "static" / "site.css").write_text("body {}")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with (tmp_path / "nginx.err").open("w") as log, running(
        [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"], stdout=log
    ):
        wait_for(lambda: listening(port), what=f"nginx on {port}")
        yield port


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "nginx.conf").write_text(text)
    (tmp_path / "mime.types").write_text(mime_types())
    return tmp_path / "nginx.conf"


def self_signed(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.mark.parametrize("variant", ["tls", "proxied-tls", "uwsgi", "csp-other-id-header", "no-security-headers"])
def test_nginx_and_gixy_accept_the_error_pages_beside_every_add_header(tmp_path: Path, variant: str) -> None:
    # Each error location adds headers, which drops the server's own add_header (HSTS) unless it repeats it.
    flags: dict[str, object] = {}
    ctx = context(tmp_path, "uwsgi" if variant == "uwsgi" else "http")
    if variant == "tls":
        cert, key = self_signed(tmp_path)
        ctx = dataclasses.replace(ctx, tls=TlsFiles(port=18443, cert=cert, key=key))
    elif variant == "proxied-tls":
        ctx = dataclasses.replace(ctx, trusted_proxies=("10.0.0.0/8",))
    elif variant == "csp-other-id-header":
        flags = {"security.content_security_policy": "default-src 'self'", "logging.request_id_header": "X-Trace-Id"}
    elif variant == "no-security-headers":
        flags = {"security.headers": "false"}
    spec = make_spec(**flags)
    text = rendered(spec, ctx)
    conf = write(tmp_path, text)
    result = nginx_test(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    run_tool([tool("gixy"), str(conf)])

    # The last server's pages: with TLS the plain-HTTP redirect's come first, and carry no HSTS (RFC 6797 7.2).
    blocks = [part.split("\n        }", 1)[0] for part in text.split("location @flaskprod_error_json {")[1:]]
    block = blocks[-1]
    if variant in ("tls", "proxied-tls"):
        assert "add_header Strict-Transport-Security" in block
    if variant == "tls":
        assert len(blocks) == 2 and "Strict-Transport-Security" not in blocks[0]
    if variant == "csp-other-id-header":
        assert "add_header X-Trace-Id $flaskprod_request_id always;" in block
        assert "add_header Content-Security-Policy \"default-src 'self'\" always;" in block
    if variant == "no-security-headers":
        assert "X-Frame-Options" not in block and "add_header X-Request-ID $flaskprod_request_id always;" in block


def test_every_error_nginx_answers_itself_is_sent_to_the_pages(tmp_path: Path) -> None:
    text = rendered(make_spec(), context(tmp_path))
    codes = "403 404 405 413 429 501 502 503 504 500"
    # The server's, and location /'s own (its error_page for event streams would drop the server's).
    assert text.count(f"error_page {codes} @flaskprod_error_$flaskprod_error_format;") == 2
    for code in (413, 429, 501, 502, 503, 504):
        assert f"        {code} " in text[text.index("map $status $flaskprod_error_json") :]


def test_with_the_apps_error_pages_off_nginx_keeps_its_own(tmp_path: Path) -> None:
    text = rendered(make_spec(**{"security.error_pages": "false"}), context(tmp_path))
    assert "flaskprod_error" not in text and "flaskprod_accept" not in text


def test_the_pages_hold_no_dollar_but_the_request_id_variable(tmp_path: Path) -> None:
    # nginx reads any '$' in a body as a variable: only the request id's may be there.
    text = rendered(make_spec(), context(tmp_path))
    maps = text[text.index("map $status $flaskprod_error_json") : text.index("map $http_accept")]
    bodies = [line for line in maps.splitlines() if line.strip().split(" ")[0] in ("default", "413", "502")]
    assert len(bodies) == 6
    assert all(line.count("$") == line.count("${flaskprod_request_id}") == 1 for line in bodies)
