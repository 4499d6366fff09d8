"""An app that mounts itself under a URL prefix (Flask's APPLICATION_ROOT recipe with DispatcherMiddleware): its
probes answer where the spec puts them, and nginx serves its static files under the prefix."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix

from flaskprod.runtime.mounted import mount_prefix, mount_prefixes
from tests.buildkit import run_tool, tool
from tests.support import free_port, run_flaskprod
from tests.upstack import start_up, stop, write_app

MOUNTED = """
from flask import Flask, url_for
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from flaskprod import Production

app = Flask(__name__)
app.config["APPLICATION_ROOT"] = "/shop"
Production(app)


@app.get("/")
def index():
    return {"stylesheet": url_for("static", filename="css/plain.css")}


app.wsgi_app = DispatcherMiddleware(NotFound(), {"/shop": app.wsgi_app})
"""


def _app() -> Flask:
    return Flask("mounted")


def test_an_app_at_the_root_has_no_prefix() -> None:
    app = _app()
    assert mount_prefix(app) == ""
    app.wsgi_app = ProxyFix(app.wsgi_app)  # type: ignore[method-assign]
    assert mount_prefix(app) == ""


def test_the_prefix_is_read_through_dispatchers_and_middleware() -> None:
    app = _app()
    other = _app()
    inner = DispatcherMiddleware(other, {"/shop/": ProxyFix(app.wsgi_app)})
    app.wsgi_app = ProxyFix(DispatcherMiddleware(NotFound(), {"/eu": inner}))  # type: ignore[method-assign]
    assert mount_prefix(app) == "/eu/shop"


def test_an_app_reached_at_the_root_too_needs_no_prefix() -> None:
    app = _app()
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/v1": app.wsgi_app})  # type: ignore[method-assign]
    assert mount_prefix(app) == ""


def test_every_prefix_the_app_is_reached_under_is_found() -> None:
    app = _app()
    core = app.wsgi_app
    app.wsgi_app = DispatcherMiddleware(NotFound(), {"/shop": core, "/store": ProxyFix(core)})  # type: ignore[method-assign]
    assert (mount_prefixes(app), mount_prefix(app)) == (("/shop", "/store"), "/shop")
    app.wsgi_app = DispatcherMiddleware(core, {"/shop": core})  # type: ignore[method-assign]
    assert (mount_prefixes(app), mount_prefix(app)) == (("", "/shop"), "")


def test_middleware_that_hides_its_app_gives_no_prefix() -> None:
    app = _app()
    hidden = app.wsgi_app

    def opaque(environ, start_response):  # type: ignore[no-untyped-def]
        return hidden(environ, start_response)

    app.wsgi_app = DispatcherMiddleware(NotFound(), {"/shop": opaque})  # type: ignore[method-assign]
    assert mount_prefix(app) == ""


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["uwsgi", "gunicorn"])
def test_up_serves_an_app_mounted_under_a_prefix(tmp_path: Path, kind: str) -> None:
    # Before, nginx asked /readyz, the dispatcher answered 404, and up waited proxy.ready_timeout, then gave up.
    write_app(tmp_path, MOUNTED)
    stack = start_up(tmp_path, kind, free_port(), "--workers", "1", "--set", "proxy.ready_timeout=20")
    try:
        stack.wait_ready()
        assert stack.get("/readyz").json()["status"] == "ok"
        assert stack.get("/healthz").status_code == 200
        assert stack.get("/shop/readyz").status_code == 200
        assert stack.get("/metrics").status_code == 200
        # Under the prefix the app answers its metrics too, past nginx's guard of /metrics: nginx hides them.
        assert stack.get("/shop/metrics").status_code == 404
        assert stack.get("/shop//metrics").status_code == 404
        page = stack.get("/shop/")
        assert page.json() == {"stylesheet": "/shop/static/css/plain.css"}
        assert "X-Request-ID" in page.headers  # the app answered
        css = stack.get("/shop/static/css/plain.css")
        assert css.status_code == 200
        assert "X-Request-ID" not in css.headers, "the app served its static file: nginx should have, from disk"
        assert stack.get("/static/css/plain.css").status_code == 404  # no such URL: the app is under /shop
        assert stack.get("/").status_code == 404
    finally:
        stop(stack)


# Reached at the root and under /shop, and under /store: nginx guards /metrics, and hides the others.
MOUNTED_THRICE = MOUNTED.replace(
    'app.wsgi_app = DispatcherMiddleware(NotFound(), {"/shop": app.wsgi_app})',
    'app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/shop": app.wsgi_app, "/store": app.wsgi_app})',
)


@pytest.mark.integration
def test_up_hides_the_metrics_under_every_prefix_the_app_is_reached_under(tmp_path: Path) -> None:
    # Before, nginx hid /shop/metrics for the first prefix found, or none when the app was reached at the root too.
    assert MOUNTED_THRICE != MOUNTED
    write_app(tmp_path, MOUNTED_THRICE)
    stack = start_up(tmp_path, "uwsgi", free_port(), "--workers", "1", "--set", "proxy.ready_timeout=20")
    try:
        stack.wait_ready()
        assert stack.get("/metrics").status_code == 200
        assert [stack.get(f"{prefix}/metrics").status_code for prefix in ("/shop", "/store")] == [404, 404]
        assert stack.get("/store/").json() == {"stylesheet": "/store/static/css/plain.css"}
    finally:
        stop(stack)


@pytest.mark.parametrize("target", ["compose", "k8s"])
def test_build_writes_nginx_for_an_app_mounted_under_a_prefix(tmp_path: Path, target: str) -> None:
    write_app(tmp_path, MOUNTED)
    (tmp_path / "requirements.txt").write_text("flask\nflaskprod\n")
    key = {"FLASK_SECRET_KEY": secrets.token_hex(32)}
    done = run_flaskprod("build", "--target", target, "app:app", cwd=tmp_path, env=key)
    assert done.returncode == 0, done.stderr
    conf = next((tmp_path / "deploy" / target).rglob("nginx.conf")).read_text()
    assert "location = /shop/metrics {\n            return 404;" in conf
    assert "location /shop/static/ {" in conf
    assert "location /static/ {" not in conf
    run_tool([tool("gixy"), str(next((tmp_path / "deploy" / target).rglob("nginx.conf")))])
