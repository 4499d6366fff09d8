"""Readiness checks an app factory adds on a shared `prod = Production()`: before or after prod.init_app(app), and
inside another app's context, each lands on the app the factory makes, once per app."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from flaskprod import Production

DUPLICATE_CACHE = (
    "a readiness check named 'cache' is already registered; pick another name, or add it once: at a module's top "
    "level for every app, or in the factory once its app exists (after app = Flask(...))"
)


@pytest.fixture(autouse=True)
def settings_of_the_test_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No flaskprod.toml, and no FLASK_/FLASKPROD_ variable from the developer's shell."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("FLASK_", "FLASKPROD_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FLASKPROD_LOGGING__ACCESS_LOG", "false")
    yield


def checks_of(app: Flask) -> dict[str, str]:
    """Each readiness check app's /readyz runs, by name, and how it went."""
    return {name: check["status"] for name, check in app.test_client().get("/readyz").json["checks"].items()}


def new_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    return app


def test_checks_a_factory_adds_before_init_app_are_each_apps_own_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The natural order (`@prod.readiness_check` in create_app, then prod.init_app(app)): before the fix the second
    create_app() raised "a readiness check named 'cache' is already registered"; the first app's check ran for every
    app. A module of checks registered at its top level still runs for every app."""
    prod = Production()
    (tmp_path / "factory_checks_before.py").write_text(
        "from tests.test_extension_factory_checks import MODULE_PROD\n\n"
        "@MODULE_PROD.readiness_check('disk')\n"
        "def disk() -> bool:\n"
        "    return True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    def create_app(cache_up: bool) -> Flask:
        app = new_app()

        @prod.readiness_check("cache")
        def cache() -> bool:
            return cache_up

        prod.init_app(app)
        return app

    def create_app_with_module_checks(cache_up: bool) -> Flask:
        app = new_app()
        MODULE_PROD.add_check("cache", lambda: cache_up)
        import factory_checks_before  # noqa: F401  # imported once: by the first app's factory

        MODULE_PROD.init_app(app)
        return app

    shop, admin = create_app(True), create_app(False)
    assert (checks_of(shop), checks_of(admin)) == ({"cache": "ok"}, {"cache": "fail"})
    first, second = create_app_with_module_checks(True), create_app_with_module_checks(False)
    assert checks_of(first) == {"disk": "ok", "cache": "ok"}
    assert checks_of(second) == {"disk": "ok", "cache": "fail"}


def test_the_same_check_twice_for_one_app_is_still_refused_in_one_line() -> None:
    prod = Production()

    def create_app(*, again_after_init: bool) -> Flask:
        app = new_app()
        prod.add_check("cache", lambda: True)
        if again_after_init:
            prod.init_app(app)
        prod.add_check("cache", lambda: True)
        return app

    for again_after_init in (False, True):
        with pytest.raises(ValueError) as refused:
            create_app(again_after_init=again_after_init)
        assert str(refused.value) == DUPLICATE_CACHE
    # A check for every app (at a module's top level) and one of the same name an app's factory adds clash too.
    app = new_app()
    MODULE_PROD_FOR_CLASH.init_app(app)
    with pytest.raises(ValueError, match="'everywhere' is already registered"):
        MODULE_PROD_FOR_CLASH.add_check("everywhere", lambda: True)


def test_a_factory_run_inside_another_apps_context_adds_its_checks_to_the_app_it_makes() -> None:
    """A test calling create_app() under `with other.app_context():`, or a dispatcher making a sub-app in a request:
    before the fix a check added after init_app went to the current app (other), not to the app being made."""
    prod = Production()

    def create_app(name: str, *, before_init: bool) -> Flask:
        app = new_app()
        if before_init:
            prod.add_check(f"{name}-before", lambda: True)
        prod.init_app(app)
        prod.add_check(f"{name}-after", lambda: True)
        add_queue_check(name)  # a helper the factory calls, holding no app itself
        return app

    def add_queue_check(name: str) -> None:
        prod.add_check(f"{name}-queue", lambda: True)

    other = create_app("other", before_init=False)
    with other.app_context():
        sub = create_app("sub", before_init=True)
    assert checks_of(other) == {"other-after": "ok", "other-queue": "ok"}
    assert checks_of(sub) == {"sub-before": "ok", "sub-after": "ok", "sub-queue": "ok"}

    made: list[Flask] = []

    @other.get("/tenant")
    def tenant() -> str:
        made.append(create_app("tenant", before_init=False))  # in other's request, as a dispatcher does
        return "made"

    assert other.test_client().get("/tenant").text == "made"
    assert checks_of(made[0]) == {"tenant-after": "ok", "tenant-queue": "ok"}
    assert checks_of(other) == {"other-after": "ok", "other-queue": "ok"}


MODULE_PROD = Production()
MODULE_PROD_FOR_CLASH = Production()
MODULE_PROD_FOR_CLASH.add_check("everywhere", lambda: True)
