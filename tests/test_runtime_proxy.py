"""ProxyFix with exactly the configured number of trusted hops, and an app's own ProxyFix beside Production(app)."""

from __future__ import annotations

import getpass
import http.client
import json
import secrets
import shutil
import ssl
from pathlib import Path

import pytest
from flask import Flask, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix

from flaskprod import Production
from flaskprod.runtime.extension import settle_as_loaded
from flaskprod.spec import Spec
from tests.conftest import StartServer
from tests.support import free_port, running, self_signed, wait_for
from tests.upstack import iter_json_lines, start_up, stop, up_env, write_app


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

    from flaskprod.runtime.proxy import CLIENT_ADDRESS_KEY, trust_proxies

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
                # What ours adds: the address it read, kept for the access line.
                client = ours.pop(CLIENT_ADDRESS_KEY, None)
                assert client is None or client == ours["REMOTE_ADDR"] != base["REMOTE_ADDR"]
                assert ours == theirs, (hops, present, value)
                compared += 1
    assert compared == 3 * 32 * len(values)


def own_proxy_fix_app(*, wrap_after: bool = False, below_middleware: bool = False) -> Flask:
    """An app with a ProxyFix of its own (x_for=1, x_proto=1) and Production(app) trusting no hops."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    app.add_url_rule("/whoami", "whoami", lambda: {"ip": request.remote_addr, "scheme": request.scheme})
    if not wrap_after:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    if below_middleware:
        app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {})  # type: ignore[method-assign]
    Production(app, spec=Spec().replace(**{"logging.access_log": False}))
    if wrap_after:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    return app


# A client on the internet, as a proxy on this machine (127.0.0.1, in monitoring.metrics_allow) passes it on.
THROUGH_LOCAL_PROXY = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize("below_middleware", [False, True], ids=["outermost", "below-other-middleware"])
def test_the_apps_own_proxy_fix_decides_what_production_sees_with_no_hops(below_middleware: bool) -> None:
    client = own_proxy_fix_app(below_middleware=below_middleware).test_client()
    local = {"REMOTE_ADDR": "127.0.0.1"}
    metrics = client.get("/metrics", headers=THROUGH_LOCAL_PROXY, environ_base=local)
    assert metrics.status_code == 403
    response = client.get("/whoami", headers=THROUGH_LOCAL_PROXY, environ_base=local)
    assert response.json == {"ip": "203.0.113.9", "scheme": "https"}  # the app's own view, unchanged
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # once, not twice below other middleware
    operator = client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}, environ_base=local)
    assert operator.status_code == 200


@pytest.mark.parametrize("wrap_after", [False, True], ids=["before-production", "after-production"])
def test_a_client_naming_itself_local_to_the_apps_proxy_fix_reads_no_metrics(wrap_after: bool) -> None:
    """Straight to the app, an X-Forwarded-For of its own: the app's ProxyFix takes it, the allow list does not."""
    client = own_proxy_fix_app(wrap_after=wrap_after).test_client()
    forged = {"X-Forwarded-For": "127.0.0.1"}
    assert client.get("/metrics", headers=forged, environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403


OWN_PROXY_FIX_APP = """
from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from flaskprod import Production

app = Flask(__name__)
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
prod = Production(app)


@prod.readiness_check("cache")
def cache() -> bool:
    raise RuntimeError("cache at 10.1.2.3:6379 refused the connection")


@app.get("/whoami")
def whoami() -> dict[str, object]:
    return {"ip": request.remote_addr, "scheme": request.scheme}
"""


def tls_nginx(directory: Path, *, port: int, upstream: int) -> tuple[list[str], Path]:
    """nginx terminating TLS on 127.0.0.1:port in front of 127.0.0.1:upstream, setting X-Forwarded-For and
    X-Forwarded-Proto as a proxy does; its command and its certificate."""
    cert, key = self_signed(directory, name="127.0.0.1", alt_names="IP:127.0.0.1")
    temp_paths = "".join(f"{kind}_temp_path {directory}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi",
                                                                              "uwsgi", "scgi"))  # fmt: skip
    # As root, nginx's workers would run as nobody, who cannot read pytest's private temp dirs.
    (directory / "nginx.conf").write_text(f"""user {getpass.getuser()};
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    {temp_paths}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
""")
    nginx = shutil.which("nginx") or "nginx"
    return [nginx, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"], cert


def fetch(
    port: int, path: str, *, source: str, cert: Path | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET 127.0.0.1:port/path (HTTPS with cert) from the address source: another loopback address (127.0.0.2) is a
    client outside monitoring.metrics_allow, as the internet is, while the traffic stays on this machine."""
    connection = (
        http.client.HTTPSConnection(
            "127.0.0.1", port, context=ssl.create_default_context(cafile=str(cert)), source_address=(source, 0),
            timeout=10,
        )
        if cert is not None
        else http.client.HTTPConnection("127.0.0.1", port, source_address=(source, 0), timeout=10)
    )
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.mark.integration
def test_behind_nginx_the_apps_own_proxy_fix_keeps_metrics_and_readiness_details_from_the_internet(
    serve_app: StartServer, tmp_path: Path
) -> None:
    """flaskprod serve (Gunicorn, proxy.trusted_hops = 0) behind an nginx of the user's, with TLS, and the app's own
    ProxyFix: a client outside monitoring.metrics_allow reads neither the metrics nor why a readiness check fails,
    the operator on this machine reads both, and responses over HTTPS carry HSTS."""
    server = serve_app(OWN_PROXY_FIX_APP)
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    port = free_port()
    command, cert = tls_nginx(nginx_dir, port=port, upstream=server.port)
    with (nginx_dir / "out.log").open("w") as log, running(command, cwd=nginx_dir, stdout=log, stderr=log) as proxy:

        def answers() -> bool:
            assert proxy.poll() is None, (nginx_dir / "out.log").read_text() + (nginx_dir / "error.log").read_text()
            return fetch(port, "/healthz", source="127.0.0.1", cert=cert)[0] == 200

        wait_for(answers, timeout=20, what="nginx in front of the app")
        status, headers, body = fetch(port, "/whoami", source="127.0.0.2", cert=cert)
        assert (status, json.loads(body)) == (200, {"ip": "127.0.0.2", "scheme": "https"})
        assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"

        status, _, body = fetch(port, "/metrics", source="127.0.0.2", cert=cert)
        assert (status, json.loads(body)) == (403, {"status": "forbidden: not in monitoring.metrics_allow"})
        status, _, body = fetch(port, "/readyz", source="127.0.0.2", cert=cert)
        assert status == 503
        assert json.loads(body)["checks"]["cache"].keys() == {"status", "time_ms"}

        status, _, body = fetch(port, "/metrics", source="127.0.0.1", cert=cert)
        assert status == 200 and b'http_requests_total{endpoint="/whoami"' in body
        status, _, body = fetch(port, "/readyz", source="127.0.0.1", cert=cert)
        error = "RuntimeError: cache at 10.1.2.3:6379 refused the connection"
        assert (status, json.loads(body)["checks"]["cache"]["error"]) == (503, error)
    # Straight to the app, naming itself local in a header of its own: the app's ProxyFix believes it, the allow
    # list does not.
    status, _, _ = fetch(server.port, "/metrics", source="127.0.0.2", headers={"X-Forwarded-For": "127.0.0.1"})
    assert status == 403


def proxy_fix_under_production(hops: int, **trusted: int) -> Flask:
    app = Flask("proxy_fix_hops")
    app.config["SECRET_KEY"] = secrets.token_hex(32)

    @app.get("/whoami")
    def whoami() -> dict[str, object]:
        return {"ip": request.remote_addr}

    app.wsgi_app = ProxyFix(app.wsgi_app, **trusted)  # type: ignore[method-assign]
    Production(app, spec=Spec().replace(**{"proxy.trusted_hops": hops}))
    return app


def test_an_apps_proxy_fix_trusting_other_hops_is_told_once_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    app = proxy_fix_under_production(1, x_for=2)
    expected = (
        "the app's ProxyFix trusts x_for=2 but proxy.trusted_hops = 1: the app reads another client address from "
        "X-Forwarded-* than flaskprod's layer does (its logs, metrics allow list, HSTS); remove the app's ProxyFix, "
        "or, if that many proxies really are in front, set proxy.trusted_hops = 2 (FP-C008)"
    )
    assert warnings_in(capsys.readouterr().out) == [expected]
    client = app.test_client()
    for _ in range(3):
        client.get("/whoami", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
    assert warnings_in(capsys.readouterr().out) == []


@pytest.mark.parametrize("trusted", [{"x_for": 1, "x_proto": 1}, {"x_for": 0, "x_proto": 1}])
def test_an_apps_proxy_fix_trusting_the_same_hops_is_not_told(
    capsys: pytest.CaptureFixture[str], trusted: dict[str, int]
) -> None:
    proxy_fix_under_production(1, **trusted)
    assert warnings_in(capsys.readouterr().out) == []


OUTER_PROXY_FIX_TOLD = (
    "the app's ProxyFix, wrapped after Production(app), trusts x_for=2 but proxy.trusted_hops = 1: flaskprod's layer "
    "inside it reads X-Forwarded-* again, so the app gets flaskprod's client address, not its ProxyFix's; remove the "
    "app's ProxyFix, or, if that many proxies really are in front, set proxy.trusted_hops = 2 (FP-C008)"
)
INNER_PROXY_FIX_TOLD = (
    "the app's ProxyFix trusts x_for=2 but proxy.trusted_hops = 1: the app reads another client address from "
    "X-Forwarded-* than flaskprod's layer does (its logs, metrics allow list, HSTS); remove the app's ProxyFix, "
    "or, if that many proxies really are in front, set proxy.trusted_hops = 2 (FP-C008)"
)


@pytest.mark.parametrize("wrap_after", [False, True], ids=["before-production", "after-production"])
def test_an_apps_proxy_fix_trusting_other_hops_is_told_once_whichever_side_of_production_it_is(
    capsys: pytest.CaptureFixture[str], wrap_after: bool
) -> None:
    """Before Production(app), init_app tells it; wrapped after, settle_as_loaded does, as a server loads the app (or
    at its first request, under a server flaskprod did not start): once, however often the app is settled."""
    app = Flask("proxy_fix_hops")
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    app.add_url_rule("/whoami", "whoami", lambda: request.remote_addr or "")
    if not wrap_after:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=2)  # type: ignore[method-assign]
    Production(app, spec=Spec().replace(**{"proxy.trusted_hops": 1, "logging.access_log": False}))
    if wrap_after:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=2)  # type: ignore[method-assign]
    settle_as_loaded(app)  # as discovery.load does
    client = app.test_client()
    answers = [client.get("/whoami", headers={"X-Forwarded-For": "10.0.0.3, 10.0.0.2"}).text for _ in range(3)]
    settle_as_loaded(app)
    # After: the ProxyFix's reading (10.0.0.3) is overwritten by flaskprod's layer inside it; before: the app's own.
    assert answers == ["10.0.0.2" if wrap_after else "10.0.0.3"] * 3
    assert warnings_in(capsys.readouterr().out) == [OUTER_PROXY_FIX_TOLD if wrap_after else INNER_PROXY_FIX_TOLD]


OUTER_PROXY_FIX_APP = """
from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from flaskprod import Production

app = Flask(__name__)
Production(app)
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=2)


@app.get("/whoami")
def whoami():
    return request.remote_addr
"""


@pytest.mark.integration
def test_under_serve_an_apps_proxy_fix_wrapped_after_production_is_told_once_per_start(serve_app: StartServer) -> None:
    """`flaskprod serve` (Gunicorn, 2 workers, proxy.trusted_hops = 1) and a ProxyFix(x_for=2) wrapped after
    Production(app): serve's probe, loading the app, tells it once, and no worker again (tests/test_proxy_told_once)."""
    server = serve_app(OUTER_PROXY_FIX_APP, workers=2, env={"FLASKPROD_PROXY__TRUSTED_HOPS": "1"})

    def told() -> list[str]:
        return [m for m in warnings_in(server.stdout() + server.stderr()) if "ProxyFix" in m]

    wait_for(lambda: len(told()) == 1, timeout=20, what="the probe's warning")
    for _ in range(6):
        response = server.get("/whoami", headers={"X-Forwarded-For": "10.0.0.3, 10.0.0.2"})
        assert (response.status_code, response.text) == (200, "10.0.0.2"), server.output()  # flaskprod's hop
    assert told() == [OUTER_PROXY_FIX_TOLD], server.output()


DEEPER_PROXY_FIX_APP = """
from flask import Flask, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix

from flaskprod import Production

app = Flask(__name__)
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=2)
Production(app)


@app.get("/whoami")
def whoami():
    return jsonify(ip=request.remote_addr)
"""


@pytest.mark.integration
def test_behind_ups_nginx_an_apps_proxy_fix_trusting_other_hops_is_told_and_reads_its_own_hop(tmp_path: Path) -> None:
    """`flaskprod up` (its nginx, Gunicorn, proxy.trusted_hops = 1) and the app's ProxyFix(x_for=2): the warning at
    start, once (by serve's probe) and never again per request; each layer takes its own hop from nginx's list (the
    client's X-Forwarded-For, then the address nginx saw), neither shifting what the other took."""
    write_app(tmp_path, DEEPER_PROXY_FIX_APP)
    stack = start_up(tmp_path, "gunicorn", free_port(), env=up_env(FLASKPROD_LOGGING__ACCESS_LOG="true"))
    try:
        stack.wait_ready()
        told = [m for m in warnings_in(stack.stdout() + stack.stderr()) if "ProxyFix" in m]  # the probe's: stderr
        assert len(told) == 1 and "x_for=2 but proxy.trusted_hops = 1" in told[0], stack.output()
        forged = {"X-Forwarded-For": "10.0.0.3, 10.0.0.2"}
        for _ in range(4):
            status, _, body = fetch(stack.port, "/whoami", source="127.0.0.2", headers=forged)
            # The app: 2 hops back from the right of "10.0.0.3, 10.0.0.2, 127.0.0.2", not 3 (10.0.0.3).
            assert (status, json.loads(body)) == (200, {"ip": "10.0.0.2"})
        status, _, body = fetch(stack.port, "/whoami", source="127.0.0.2")
        # Fewer values than it trusts: the app's ProxyFix leaves the address flaskprod's layer set.
        assert (status, json.loads(body)) == (200, {"ip": "127.0.0.2"})
    finally:
        stop(stack)
    lines = list(iter_json_lines(stack.stdout()))
    access = [line["client"]["ip"] for line in lines if line.get("url", {}).get("path") == "/whoami"]
    assert access == ["127.0.0.2"] * 5  # flaskprod's layer: the address nginx saw
    assert [m for m in warnings_in(stack.stdout() + stack.stderr()) if "ProxyFix" in m] == told  # none per request


def warnings_in(out: str) -> list[str]:
    return [line["message"] for line in iter_json_lines(out) if line.get("log.level") == "warning"]
