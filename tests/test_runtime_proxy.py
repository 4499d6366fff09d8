"""ProxyFix with exactly the configured number of trusted hops."""

from __future__ import annotations

import secrets

from flask import Flask, request

from flaskprod import Production
from flaskprod.spec import Spec


def make_app(hops: int) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)

    @app.get("/whoami")
    def whoami() -> dict[str, object]:
        return {"ip": request.remote_addr, "scheme": request.scheme, "host": request.host, "secure": request.is_secure}

    Production(app, spec=Spec().replace(**{"proxy.trusted_hops": hops, "logging.access_log": False}))
    return app


FORWARDED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"}


def test_no_hops_ignores_forwarded_headers() -> None:
    body = make_app(0).test_client().get("/whoami", headers=FORWARDED).json
    assert body == {"ip": "127.0.0.1", "scheme": "http", "host": "localhost", "secure": False}


def test_one_hop_uses_the_proxy_headers() -> None:
    body = make_app(1).test_client().get("/whoami", headers=FORWARDED).json
    assert body == {"ip": "203.0.113.9", "scheme": "https", "host": "shop.example", "secure": True}


def test_one_hop_takes_only_the_address_the_proxy_added() -> None:
    # The client sent its own X-Forwarded-For; nginx appended the real address.
    headers = {"X-Forwarded-For": "10.6.6.6, 198.51.100.7"}
    assert make_app(1).test_client().get("/whoami", headers=headers).json["ip"] == "198.51.100.7"
    # With two trusted proxies, the second address from the right is the client.
    assert make_app(2).test_client().get("/whoami", headers=headers).json["ip"] == "10.6.6.6"
