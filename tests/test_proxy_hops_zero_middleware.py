"""proxy.trusted_hops = 0 with the app's own werkzeug ProxyFix below other middleware of its own, under a real server:
the ProxyFix is read once as the app set it (flaskprod's layer sees what it reads, the app gets the connection's own
values in werkzeug.proxy_fix.orig), whatever attribute the middleware keeps the app in; with no ProxyFix, no
X-Forwarded-* header counts.

Two ways it went wrong: the copy of the ProxyFix placed above the middleware rewrote the environ before the app's own
ProxyFix recorded it, so werkzeug.proxy_fix.orig named the client, not the proxy; and a ProxyFix below a middleware
keeping the app in .application (WhiteNoise, PEP 3333's examples) or ._app (werkzeug's ProfilerMiddleware), in a
closure's cell (a function middleware) or in an attribute of another name (.wrapped, .next_app) went unseen, so the
layer judged by the proxy's address and scheme: through a proxy on this machine anyone read /metrics, and HSTS was
never sent behind TLS."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from flaskprod import Production
from flaskprod.runtime.proxy import apps_proxy_fix
from tests.conftest import StartServer
from tests.test_runtime_proxy import fetch

APP = """
from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from flaskprod import Production

app = Flask(__name__)


class Timing:
    '''Middleware of the app's own, keeping what it wraps in .{attribute}.'''

    def __init__(self, wrapped):
        self.{attribute} = wrapped

    def __call__(self, environ, start_response):
        environ["timing.seen_addr"] = environ.get("REMOTE_ADDR")
        return self.{attribute}(environ, start_response)


{proxy_fix}app.wsgi_app = Timing(app.wsgi_app)
Production(app)


@app.get("/whoami")
def whoami():
    orig = request.environ.get("werkzeug.proxy_fix.orig") or {{}}
    return {{
        "ip": request.remote_addr,
        "scheme": request.scheme,
        "orig_ip": orig.get("REMOTE_ADDR"),
        "orig_scheme": orig.get("wsgi.url_scheme"),
    }}
"""
PROXY_FIX = "app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)\n"
# A client on the internet (203.0.113.9, over HTTPS), as a proxy on this machine passes it on.
THROUGH_LOCAL_PROXY = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
HSTS = "strict-transport-security"


@pytest.mark.integration
@pytest.mark.parametrize("attribute", ["app", "application", "_app"])
def test_the_apps_proxy_fix_below_its_middleware_is_read_once_with_the_peer_in_orig(
    serve_app: StartServer, attribute: str
) -> None:
    server = serve_app(APP.format(attribute=attribute, proxy_fix=PROXY_FIX))
    status, headers, body = fetch(server.port, "/whoami", source="127.0.0.1", headers=THROUGH_LOCAL_PROXY)
    assert status == 200
    assert json.loads(body) == {"ip": "203.0.113.9", "scheme": "https", "orig_ip": "127.0.0.1", "orig_scheme": "http"}
    assert headers[HSTS] == "max-age=31536000; includeSubDomains"  # the layer saw the scheme the ProxyFix read
    assert headers["x-content-type-options"] == "nosniff"  # once: one layer
    # The proxy on this machine passing on the internet's request: not an operator's.
    status, _, body = fetch(server.port, "/metrics", source="127.0.0.1", headers=THROUGH_LOCAL_PROXY)
    assert (status, json.loads(body)) == (403, {"status": "forbidden: not in monitoring.metrics_allow"})
    # The operator, through that proxy.
    status, _, _ = fetch(server.port, "/metrics", source="127.0.0.1", headers={"X-Forwarded-For": "127.0.0.1"})
    assert status == 200


@pytest.mark.integration
def test_with_no_proxy_fix_below_the_middleware_no_forwarded_header_counts(serve_app: StartServer) -> None:
    server = serve_app(APP.format(attribute="application", proxy_fix=""))
    forged = {**THROUGH_LOCAL_PROXY, "X-Forwarded-Host": "evil.example", "X-Forwarded-Prefix": "/evil"}
    status, headers, body = fetch(server.port, "/whoami", source="127.0.0.2", headers=forged)
    assert status == 200
    assert json.loads(body) == {"ip": "127.0.0.2", "scheme": "http", "orig_ip": None, "orig_scheme": None}
    assert HSTS not in headers
    status, _, _ = fetch(server.port, "/metrics", source="127.0.0.2", headers={"X-Forwarded-For": "127.0.0.1"})
    assert status == 403


HEAD = """
from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from flaskprod import Production

app = Flask(__name__)
"""
WHOAMI = """
@app.get("/whoami")
def whoami():
    orig = request.environ.get("werkzeug.proxy_fix.orig") or {}
    return {
        "ip": request.remote_addr,
        "scheme": request.scheme,
        "orig_ip": orig.get("REMOTE_ADDR"),
        "orig_scheme": orig.get("wsgi.url_scheme"),
    }
"""
# A function middleware: what it wraps is a closure's cell, beside the other things it holds (the Flask app, whose
# wsgi_app leads back to the middleware itself, and a logger's method).
CLOSURE = """

def timed(inner, flask_app):
    log = flask_app.logger.debug

    def middleware(environ, start_response):
        log("%s %s", flask_app.name, environ.get("PATH_INFO"))
        return inner(environ, start_response)

    return middleware


app.wsgi_app = timed(ProxyFix(app.wsgi_app, x_for=1, x_proto=1), app)
Production(app)
"""
# Middleware keeping what it wraps in attributes of their own names, one inside the other.
OTHER_ATTRIBUTES = """

class Timing:
    def __init__(self, wrapped):
        self.started = 0.0
        self.wrapped = wrapped

    def __call__(self, environ, start_response):
        return self.wrapped(environ, start_response)


class Tagging:
    def __init__(self, next_app):
        self.tag = "shop"
        self.next_app = next_app

    def __call__(self, environ, start_response):
        return self.next_app(environ, start_response)


app.wsgi_app = Tagging(Timing(ProxyFix(app.wsgi_app, x_for=1, x_proto=1)))
Production(app)
"""


@pytest.mark.integration
@pytest.mark.parametrize("middleware", [CLOSURE, OTHER_ATTRIBUTES], ids=["closure", "other-attributes"])
def test_the_apps_proxy_fix_in_a_closure_or_other_attributes_is_read(serve_app: StartServer, middleware: str) -> None:
    server = serve_app(HEAD + middleware + WHOAMI)
    # The internet's request, passed on by the proxy on this machine: no metrics for it, HSTS over its HTTPS.
    status, _, body = fetch(server.port, "/metrics", source="127.0.0.1", headers=THROUGH_LOCAL_PROXY)
    assert status == 403, body[:60]
    assert json.loads(body) == {"status": "forbidden: not in monitoring.metrics_allow"}
    status, headers, body = fetch(server.port, "/whoami", source="127.0.0.1", headers=THROUGH_LOCAL_PROXY)
    assert status == 200
    assert json.loads(body) == {"ip": "203.0.113.9", "scheme": "https", "orig_ip": "127.0.0.1", "orig_scheme": "http"}
    assert headers[HSTS] == "max-age=31536000; includeSubDomains"
    status, _, _ = fetch(server.port, "/metrics", source="127.0.0.1", headers={"X-Forwarded-For": "127.0.0.1"})
    assert status == 200


def closure_app(*, proxy_fix: bool) -> Flask:
    """A closure middleware over the app, with its own ProxyFix (x_for=1, x_proto=1) inside or none, then
    Production(app) trusting no hops."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    app.add_url_rule("/whoami", "whoami", lambda: {"ip": request.remote_addr, "scheme": request.scheme})
    inner = ProxyFix(app.wsgi_app, x_for=1, x_proto=1) if proxy_fix else app.wsgi_app
    note = app.logger.debug

    def middleware(environ: Any, start_response: Any) -> Any:
        note("%s", app.name)
        return inner(environ, start_response)

    app.wsgi_app = middleware  # type: ignore[method-assign]
    Production(app)
    return app


def test_a_closure_with_no_proxy_fix_lets_no_forwarded_header_count() -> None:
    client = closure_app(proxy_fix=False).test_client()
    response = client.get("/whoami", headers=THROUGH_LOCAL_PROXY, environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert response.json == {"ip": "127.0.0.2", "scheme": "http"}
    assert HSTS not in response.headers  # a case-insensitive look-up
    forged = {"X-Forwarded-For": "127.0.0.1"}
    assert client.get("/metrics", headers=forged, environ_base={"REMOTE_ADDR": "127.0.0.2"}).status_code == 403


class Loop:
    """Middleware whose attributes lead back to itself: the search for the app's ProxyFix ends, and soon."""

    def __init__(self) -> None:
        self.wrapped: object = self
        self.handler: object = self


def test_the_search_for_the_apps_proxy_fix_ends_on_a_cycle_and_a_long_chain() -> None:
    loop = Loop()

    def deep(level: int) -> Any:
        inner = ProxyFix(loop, x_for=1) if level == 0 else deep(level - 1)

        def middleware(environ: Any, start_response: Any) -> Any:
            return inner(environ, start_response)

        return middleware

    started = time.perf_counter()
    assert apps_proxy_fix(loop) is None
    assert apps_proxy_fix(deep(3)) is not None  # a few closures deep: found
    assert apps_proxy_fix(deep(200)) is None  # past the bound: not searched for ever
    assert time.perf_counter() - started < 1
