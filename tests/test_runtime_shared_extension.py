"""One Production() shared by a factory's apps (prod.init_app(app) in create_app): each app runs with its own
settings and counts into metrics of its own."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, request

from flaskprod import ConfigurationError, Production
from flaskprod.runtime.extension import refuse_unsafe_as_loaded

prod = Production()


def create_app(secret_key: str | None = None) -> Flask:
    """The factory: the settings are flaskprod.toml's and the FLASKPROD_* variables as it runs."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secret_key or secrets.token_hex(32)
    app.add_url_rule("/hello", "hello", lambda: "hi")
    app.add_url_rule("/whoami", "whoami", lambda: request.remote_addr or "")
    prod.init_app(app)
    return app


@pytest.fixture(autouse=True)
def settings_of_the_test_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No flaskprod.toml, and no FLASK_/FLASKPROD_ variable from the developer's shell: each test sets its own."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("FLASK_", "FLASKPROD_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FLASKPROD_LOGGING__ACCESS_LOG", "false")
    yield


def requests_total(app: Flask, metrics_path: str) -> float:
    """The app's own count of GET /hello, as its metrics path answers it."""
    text = app.test_client().get(metrics_path).text
    line = 'http_requests_total{endpoint="/hello",method="GET",status="200"} '
    return sum(float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line))


def test_each_app_of_one_factory_runs_with_its_own_settings_and_counts_its_own_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLASKPROD_MONITORING__METRICS_PATH", "/shop-metrics")
    shop = create_app()
    monkeypatch.setenv("FLASKPROD_MONITORING__METRICS_PATH", "/admin-metrics")
    monkeypatch.setenv("FLASKPROD_PROXY__TRUSTED_HOPS", "1")
    admin = create_app()

    assert shop.extensions["flaskprod"] is prod and admin.extensions["flaskprod"] is prod
    shop_client, admin_client = shop.test_client(), admin.test_client()
    assert (shop_client.get("/shop-metrics").status_code, shop_client.get("/admin-metrics").status_code) == (200, 404)
    assert (admin_client.get("/admin-metrics").status_code, admin_client.get("/shop-metrics").status_code) == (200, 404)
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    assert shop_client.get("/whoami", headers=forwarded).text == "127.0.0.1"  # trusts no proxy
    assert admin_client.get("/whoami", headers=forwarded).text == "203.0.113.9"  # one proxy in front

    for _ in range(3):
        shop_client.get("/hello")
    admin_client.get("/hello")
    assert requests_total(shop, "/shop-metrics") == 3
    assert requests_total(admin, "/admin-metrics") == 1

    # What the rest of flaskprod reads (checks, serve's probe paths): the app's own, in its context or named.
    installed = prod.installed_on(shop)
    assert installed is not None and installed.spec.monitoring.metrics_path == "/shop-metrics"
    assert "/shop-metrics" in installed.probe_paths
    with shop.app_context():
        assert prod.spec is not None and prod.spec.proxy.trusted_hops == 0
        assert installed.metrics is not None and prod.registry is installed.metrics.registry
    with admin.app_context():
        assert prod.spec is not None and prod.spec.proxy.trusted_hops == 1
        assert "/admin-metrics" in prod.probe_paths


def test_each_app_of_one_factory_is_refused_or_started_by_its_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first app that turned the refusal off (a demo with Flask's tutorial key) does not let the next one start
    with that key: the next one runs with the refusal on, as its own settings say."""
    monkeypatch.setenv("FLASKPROD_SECURITY__REFUSE_UNSAFE", "false")
    demo = create_app(secret_key="dev")
    refuse_unsafe_as_loaded(demo)  # refusal off: nothing to say
    monkeypatch.delenv("FLASKPROD_SECURITY__REFUSE_UNSAFE")
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        create_app(secret_key="dev")


def test_a_factory_adds_each_apps_own_readiness_checks_each_time_it_runs() -> None:
    """Checks added in create_app after prod.init_app(app) are that app's: the factory runs again (each test's app)
    without 'already registered', and one app's checks never run for another. One added before any init_app (at
    module level) runs for every app."""
    shared = Production()
    shared.add_check("disk", lambda: True)

    def create_app_with_checks(cache_up: bool, *, queue: bool) -> Flask:
        app = Flask(__name__)
        app.config["SECRET_KEY"] = secrets.token_hex(32)
        shared.init_app(app)

        @shared.readiness_check("cache")
        def cache() -> bool:
            return cache_up

        if queue:
            shared.add_check("queue", lambda: True)
        return app

    shop = create_app_with_checks(True, queue=True)
    admin = create_app_with_checks(False, queue=False)  # before the fix: ValueError, 'cache' already registered

    shop_ready, admin_ready = shop.test_client().get("/readyz"), admin.test_client().get("/readyz")
    assert (shop_ready.status_code, admin_ready.status_code) == (200, 503)
    assert {name: check["status"] for name, check in shop_ready.json["checks"].items()} == {
        "disk": "ok", "cache": "ok", "queue": "ok"
    }
    assert {name: check["status"] for name, check in admin_ready.json["checks"].items()} == {
        "disk": "ok", "cache": "fail"
    }
    # The same name twice for one app is still refused, as is the name of a check every app runs.
    with pytest.raises(ValueError, match="a readiness check named 'cache' is already registered; pick another name"):
        shared.add_check("cache", lambda: True)
    with shop.app_context(), pytest.raises(ValueError, match="'queue' is already registered"):
        shared.add_check("queue", lambda: True)
    with pytest.raises(ValueError, match="'disk' is already registered"):
        shared.add_check("disk", lambda: True)
    # In an app's context, a check is added to that app, not to the one made last.
    with shop.app_context():
        shared.add_check("search", lambda: True)
    assert "search" in shop.test_client().get("/readyz").json["checks"]
    assert "search" not in admin.test_client().get("/readyz").json["checks"]


def test_checks_a_module_registers_as_the_factory_imports_it_run_for_every_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`from . import checks` inside create_app, after init_app: the module runs once, for the first app, and its
    checks, registered at its top level, are every app's, as they were before checks were kept per app."""
    (tmp_path / "factory_checks_mod.py").write_text(
        "from tests.test_runtime_shared_extension import SHARED\n\n"
        "@SHARED.readiness_check('redis')\n"
        "def redis() -> bool:\n"
        "    return True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    def create_app_importing_checks() -> Flask:
        app = Flask(__name__)
        app.config["SECRET_KEY"] = secrets.token_hex(32)
        SHARED.init_app(app)
        import factory_checks_mod  # noqa: F401  # imported once: by the first app's factory

        return app

    first, second = create_app_importing_checks(), create_app_importing_checks()
    for app in (first, second):
        checks = app.test_client().get("/readyz").json["checks"]
        assert {name: check["status"] for name, check in checks.items()} == {"redis": "ok"}


SHARED = Production()
