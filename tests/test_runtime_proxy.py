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


TRICKY = [
    "a", "a,b", "a, b", " a , b ", "a,", "a, ", ",", ", ", ",a", "a,,b", "a, ,b", "  ", "\t1.2.3.4",
    "[2001:db8::1]:443, 10.0.0.1", 'a, "b, c"', '"quoted"', 'x\\y, z', "a;b, c=d",
]


def test_forwarded_values_match_werkzeugs_parser() -> None:
    import random

    from werkzeug.http import parse_list_header

    from flaskprod.runtime.proxy import forwarded_values

    rng = random.Random(4)
    # Seeded random values over the characters that matter to the parser, beside the hand-picked ones.
    generated = ["".join(rng.choice(' ,,a.1:"\\\t') for _ in range(rng.randint(1, 12))) for _ in range(3000)]
    for value in TRICKY + generated:
        assert forwarded_values(value) == parse_list_header(value), value


def test_trusted_proxies_change_the_environ_exactly_as_proxyfix() -> None:
    import itertools

    from werkzeug.middleware.proxy_fix import ProxyFix

    from flaskprod.runtime.proxy import trust_proxies

    def seen(environ: dict[str, object], start_response: object) -> dict[str, object]:
        return environ

    forwarded = ["FOR", "PROTO", "HOST", "PORT", "PREFIX"]
    base = {
        "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "HTTP_HOST": "localhost:8000",
        "SERVER_NAME": "localhost", "SERVER_PORT": "8000", "SCRIPT_NAME": "",
    }
    values = [*TRICKY, "shop.example:8443", "[2001:db8::1]", "[2001:db8::1]:8443", "10.0.0.1, 10.0.0.2, 10.0.0.3"]
    compared = 0
    for hops in (1, 2, 3):
        for present in itertools.product([False, True], repeat=len(forwarded)):
            for value in values:
                environ = dict(base)
                environ.update({f"HTTP_X_FORWARDED_{h}": value for h, on in zip(forwarded, present, strict=True) if on})
                ours = trust_proxies(seen, hops)(dict(environ), None)  # type: ignore[arg-type]
                theirs = ProxyFix(seen, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)(
                    dict(environ), None  # type: ignore[arg-type]
                )
                assert ours == theirs, (hops, present, value)
                compared += 1
    assert compared == 3 * 32 * len(values)
