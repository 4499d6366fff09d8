"""proxy.trusted_hops = 0 with the app's own werkzeug ProxyFix below other middleware of its own, under a real server:
the ProxyFix is read once as the app set it (flaskprod's layer sees what it reads, the app gets the connection's own
values in werkzeug.proxy_fix.orig), whatever attribute the middleware keeps the app in; with no ProxyFix, no
X-Forwarded-* header counts.

Two ways it went wrong: the copy of the ProxyFix placed above the middleware rewrote the environ before the app's own
ProxyFix recorded it, so werkzeug.proxy_fix.orig named the client, not the proxy; and a ProxyFix below a middleware
keeping the app in .application (WhiteNoise, PEP 3333's examples) or ._app (werkzeug's ProfilerMiddleware) went
unseen, so the layer judged by the proxy's address and scheme: through a proxy on this machine anyone read /metrics,
and HSTS was never sent behind TLS."""

from __future__ import annotations

import json

import pytest

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
