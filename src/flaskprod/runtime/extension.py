"""Production(app): the Flask extension that makes an app fit for production traffic."""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from flask import Flask, current_app, has_app_context, request

from ..errors import ConfigurationError
from ..spec import Spec, load_spec
from . import config
from .allowlist import Allowlist
from .db import configure_engines, database_checks
from .deadline import EXPIRED_KEY, waited_too_long
from .errorpages import register_error_pages
from .headers import (
    configure_cookies,
    hsts_headers,
    secure_foreign_session_cookie,
    secure_remember_cookie,
    security_headers,
)
from .health import Check, CheckRunner, FailureLog, readiness, without_detail
from .interrupted_queries import let_psycopg_cancel_at_the_deadline
from .logs import access_log_enabled, access_logger, configure_logging, revive_loggers
from .metrics import KNOWN_METHODS, OTHER_METHOD, UNMATCHED, HttpMetrics
from .pipeline import ROUTE_KEY, Probe, RequestPipeline, json_probe_response
from .proxy import hops_disagreement, hops_disagreement_outside, inside_apps_proxy_fix, told_at_start, trust_proxies
from .secrets import refuse_unsafe

if TYPE_CHECKING:
    from types import FrameType

    from _typeshed.wsgi import WSGIEnvironment
    from prometheus_client import CollectorRegistry
    from werkzeug.routing import Rule

C = TypeVar("C", bound=Check)
EXTENSION_KEY = "flaskprod"


@dataclass(frozen=True, kw_only=True)
class Installed:
    """What Production's init_app made for one app; its request handling holds these from then on."""

    spec: Spec
    metrics: HttpMetrics | None
    probe_paths: frozenset[str]  # answered by the app's request pipeline itself (health, readiness, metrics)
    # The readiness checks added once init_app had run for this app (in its factory): its own, not the other apps'.
    checks: dict[str, Check] = field(default_factory=dict)


class Production:
    """Config from the environment, start-up refusal, probes, metrics, logs, proxy trust, headers, errors, DB.

    Each part is switched by the spec (by default flaskprod.toml and FLASKPROD_* variables). One instance may serve
    several apps (prod.init_app(app) in a factory): each gets the spec as its init_app loads it, unless one was given,
    and metrics of its own. A readiness check added at a module's top level runs for every app; one a factory adds,
    before or after prod.init_app(app), is the app that factory is making (see add_check).
    """

    def __init__(self, app: Flask | None = None, *, spec: Spec | None = None) -> None:
        self._given_spec = spec
        self._checks: dict[str, Check] = {}
        # What init_app made for each app, as Flask-SQLAlchemy keeps its engines: weakly, so an app can go.
        self._installed: weakref.WeakKeyDictionary[Flask, Installed] = weakref.WeakKeyDictionary()
        # Checks a factory added for its app before prod.init_app(app): init_app makes them that app's.
        self._pending: weakref.WeakKeyDictionary[Flask, dict[str, Check]] = weakref.WeakKeyDictionary()
        self._last_app: weakref.ref[Flask] | None = None
        if app is not None:
            self.init_app(app)

    def installed_on(self, app: Flask) -> Installed | None:
        """What init_app made for app: its spec, metrics and probe paths; None for an app it did not run for."""
        return self._installed.get(app)

    def _current(self) -> Installed | None:
        """The current app's (in its app context), else that of the app init_app ran for last."""
        if has_app_context():
            installed = self._installed.get(current_app._get_current_object())  # type: ignore[attr-defined]
            if installed is not None:
                return installed
        last = self._last_app() if self._last_app is not None else None
        return self._installed.get(last) if last is not None else None

    @property
    def spec(self) -> Spec | None:
        """The current app's spec (see _current); the one given, or None, before init_app."""
        installed = self._current()
        return installed.spec if installed is not None else self._given_spec

    @property
    def probe_paths(self) -> frozenset[str]:
        """Paths the current app's request pipeline answers itself (health, readiness, metrics), as its settings
        turned them on."""
        installed = self._current()
        return installed.probe_paths if installed is not None else frozenset()

    @property
    def _metrics(self) -> HttpMetrics | None:
        installed = self._current()
        return installed.metrics if installed is not None else None

    @property
    def registry(self) -> CollectorRegistry | None:
        """The current app's private metrics registry (None until init_app, or with metrics off)."""
        metrics = self._metrics
        return metrics.registry if metrics is not None else None

    def add_check(self, name: str, fn: Check) -> None:
        """Run fn on every readiness probe; it fails by raising, returning False or overrunning the timeout.

        Added at a module's top level, for every app: a module is imported once, by whichever app's factory imports
        it first, so its checks are every app's. Added in a function, for the app that function (or the one calling
        it) holds, the factory's `app`, whether prod.init_app(app) ran yet or not: each app the factory makes gets
        its own each time it runs, even inside another app's context. With no app held there (or several), the
        current app's (in its app context), else the app init_app ran for last, else every app's.
        """
        self._add(name, fn, sys._getframe(1))

    def readiness_check(self, name: str) -> Callable[[C], C]:
        """Decorator form of add_check."""

        def register(fn: C) -> C:
            self._add(name, fn, sys._getframe(1))
            return fn

        return register

    def _add(self, name: str, fn: Check, caller: FrameType | None) -> None:
        if _called_from_module_level(caller):
            self._add_for_every_app(name, fn)
            return
        app = self._app_being_made(caller)
        if app is not None and app not in self._installed:
            pending = self._pending.setdefault(app, {})
            self._refuse_duplicate(name, pending)
            pending[name] = fn
            return
        installed = self._installed.get(app) if app is not None else self._current()
        if installed is None:
            self._add_for_every_app(name, fn)
            return
        self._refuse_duplicate(name, installed.checks)
        installed.checks[name] = fn

    def _add_for_every_app(self, name: str, fn: Check) -> None:
        apps_own = [*(each.checks for each in self._installed.values()), *self._pending.values()]
        if name in self._checks or any(name in own for own in apps_own):
            raise ValueError(_already_registered(name))
        self._checks[name] = fn

    def _refuse_duplicate(self, name: str, apps_own: dict[str, Check]) -> None:
        """ValueError when name is a check every app runs, or one of the app's own."""
        if name in self._checks or name in apps_own:
            raise ValueError(_already_registered(name))

    def _app_being_made(self, caller: FrameType | None) -> Flask | None:
        """The app the nearest frame from caller outwards holds in a variable (a factory's `app`, made for this
        Production or not yet given to one), if it holds exactly one; None when none does, or it holds several (a
        test's two apps: its app context then says which)."""
        frame = caller
        for _ in range(_FRAMES_LOOKED_AT):
            if frame is None:
                return None
            held = {id(value): value for value in frame.f_locals.values() if self._may_hold_checks_of(value)}
            if held:
                return next(iter(held.values())) if len(held) == 1 else None
            if frame.f_code.co_name == "<module>":
                return None  # the module's globals were the last place a factory's app could be
            frame = frame.f_back
        return None

    def _may_hold_checks_of(self, value: object) -> bool:
        """Whether value is an app of this Production's, or one no Production was given yet."""
        # type() too: flask.current_app, a module's global, passes isinstance as the current app's class.
        return isinstance(value, Flask) and issubclass(type(value), Flask) and (
            value.extensions.get(EXTENSION_KEY, self) is self
        )

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "A 'Production' instance has already been registered on this Flask app. "
                "Import and use that instance instead."
            )
        # Loaded for each app: a factory's apps (a test's, with FLASKPROD_* variables of its own) each run as set.
        spec = self._given_spec if self._given_spec is not None else load_spec()
        app.extensions[EXTENSION_KEY] = self

        config.configure(app, spec)
        if spec.security.refuse_unsafe:
            refuse_unsafe(app, spec)
        if spec.logging.configure:
            configure_logging(app, spec)
        if spec.security.headers:
            configure_cookies(app, spec)
        if spec.security.error_pages:
            register_error_pages(app)
        if spec.database.engine_options:
            configure_engines(app, spec)

        metrics = HttpMetrics(name=spec.app.name, version=spec.app.version) if spec.monitoring.metrics else None
        # Not under test runners: pytest-timeout and friends own SIGALRM there.
        request_timeout = spec.server.timeout if spec.server.soft_timeout and not app.testing else None
        if request_timeout is not None:
            let_psycopg_cancel_at_the_deadline()
        if metrics is not None:
            # First in line, so the app's own before_request hooks (which may answer early) cannot skip it.
            app.before_request_funcs.setdefault(None, []).insert(0, _count_in_progress(metrics))
        elif request_timeout is not None and spec.proxy.trusted_hops > 0:
            app.before_request_funcs.setdefault(None, []).insert(0, _refuse_expired)

        mon = spec.monitoring
        probes = self._probes(app, spec, metrics)
        # The checks its factory added before this call: the app's own from now on.
        own_checks = self._pending.pop(app, {})
        self._installed[app] = Installed(spec=spec, metrics=metrics, probe_paths=frozenset(probes), checks=own_checks)
        self._last_app = weakref.ref(app)
        production_layer = functools.partial(
            RequestPipeline,
            request_id_header=spec.logging.request_id_header,
            # Only a proxy we trust may name the request; a client could otherwise forge log correlation.
            trust_request_id=spec.proxy.trusted_hops > 0,
            headers=security_headers(spec) if spec.security.headers else [],
            https_headers=hsts_headers(spec) if spec.security.headers else [],
            metrics=metrics,
            access_logger=access_logger(app) if access_log_enabled(spec) else None,
            quiet_paths=frozenset({mon.health_path, mon.ready_path, mon.metrics_path}),
            probes=probes,
            request_timeout=request_timeout,
            # When the request was passed on (X-Request-Start), from a proxy we trust to say.
            trust_start=spec.proxy.trusted_hops > 0,
            count_queue=spec.monitoring.queue_time,
            gate=_refusal_at_first_request(app) if spec.security.refuse_unsafe else None,
            error_logger=app.logger,
            body_limit=_max_content_length(app),
            config=app.config,  # its TESTING, read per request: a test fixture sets it after Production(app)
        )
        if spec.proxy.trusted_hops > 0:
            disagreement = None if told_at_start() else hops_disagreement(app.wsgi_app, spec.proxy.trusted_hops)
            if disagreement is not None:
                app.logger.warning("%s", disagreement)  # once, at start: requests then go on as configured
            wrapped = trust_proxies(production_layer(app.wsgi_app), spec.proxy.trusted_hops)
        else:
            # None trusted here: an app's own ProxyFix (FP-C008's way out) is the one that reads the proxy's headers,
            # and the layer (the metrics allow list, readiness details, HSTS) must see the client and scheme it finds.
            wrapped = inside_apps_proxy_fix(app.wsgi_app, production_layer)
        app.wsgi_app = wrapped  # type: ignore[method-assign,assignment]

    def _probes(self, app: Flask, spec: Spec, metrics: HttpMetrics | None) -> dict[str, Probe]:
        probes: dict[str, Probe] = {}
        mon = spec.monitoring
        # A failing check's error names hosts, ports and files: the operators read it, the public its status.
        operators = Allowlist(mon.metrics_allow, peer_too=spec.proxy.trusted_hops == 0)
        if mon.health:
            app_ref = weakref.ref(app)
            failures = FailureLog()
            runner = CheckRunner()  # the app's own: a check of one app still running never holds up another's

            def liveness(environ: WSGIEnvironment) -> tuple[str, list[tuple[str, str]], bytes]:
                return json_probe_response(200, {"status": "ok"})

            def ready(environ: WSGIEnvironment) -> tuple[str, list[tuple[str, str]], bytes]:
                current = app_ref()
                checks = self._checks_for(current, spec) if current is not None else dict(self._checks)
                status, body = readiness(checks, runner, mon.check_timeout)
                if current is not None:
                    failures.log(current, body["checks"])
                if not operators.admits(environ):
                    body = without_detail(body)
                return json_probe_response(status, body)

            probes[mon.health_path] = _get_only(liveness)
            probes[mon.ready_path] = _get_only(ready)
        if metrics is not None:

            def exposition(environ: WSGIEnvironment) -> tuple[str, list[tuple[str, str]], bytes]:
                body, content_type = metrics.render()
                return "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))], body

            # Behind a proxy (trusted_hops), nginx guards the path and scrapers reach the app's port on the
            # private network; facing clients (serve, the single image), the app is the only guard.
            guard = spec.proxy.trusted_hops == 0 and not operators.everyone
            probes[mon.metrics_path] = _get_only(_admitted_only(exposition, operators) if guard else exposition)
        settings = {mon.health_path: "health_path", mon.ready_path: "ready_path", mon.metrics_path: "metrics_path"}
        return {path: _tell_if_shadowed(app, path, settings[path], probe) for path, probe in probes.items()}

    def _checks_for(self, app: Flask, spec: Spec) -> dict[str, Check]:
        """The checks every app runs, app's own, and a ping per Flask-SQLAlchemy engine, each run inside app's
        context.

        Flask-SQLAlchemy is looked up here, not in init_app, because apps call db.init_app(app)
        after Production(app).
        """
        installed = self._installed.get(app)
        checks = {**self._checks, **(installed.checks if installed is not None else {})}
        if "sqlalchemy" in app.extensions:
            with app.app_context():
                schema = spec.database.migration_check
                checks = {**database_checks(app, migrations=schema), **checks}
        return {name: _in_app_context(app, fn) for name, fn in checks.items()}


def settle_as_loaded(app: Flask) -> None:
    """What Production(app) set up, checked again on the app as a server gets it, after the rest of its factory
    ran: its loggers enabled (revive_loggers), Secure on a session extension's cookie and on Flask-Login's remember-me
    cookie over HTTPS (secure_foreign_session_cookie, secure_remember_cookie), a ProxyFix wrapped after it that
    trusts other hops told (once per app, and under serve once by its probe: told_at_start), and the refusal
    of an unsafe config (refuse_unsafe_as_loaded)."""
    spec = _spec_of(app)
    if spec is not None:
        if spec.logging.configure:
            revive_loggers(app)
        if spec.security.headers and spec.security.session_cookie_secure == "auto":
            secure_foreign_session_cookie(app)
            if getattr(app, "login_manager", None) is not None:  # Flask-Login's init_app sets it
                secure_remember_cookie(app)
        if spec.proxy.trusted_hops > 0 and app not in _told_of_outer_proxy_fix and not told_at_start():
            _told_of_outer_proxy_fix.add(app)  # settled again at its first request (see _refusal_at_first_request)
            if (disagreement := hops_disagreement_outside(app.wsgi_app, spec.proxy.trusted_hops)) is not None:
                app.logger.warning("%s", disagreement)
    refuse_unsafe_as_loaded(app)


# Apps settle_as_loaded looked at for a ProxyFix wrapped after Production(app): each told of it once.
_told_of_outer_proxy_fix: weakref.WeakSet[Flask] = weakref.WeakSet()


def refuse_unsafe_as_loaded(app: Flask) -> None:
    """The start-up refusal again, on the app as a server gets it: a factory may set SECRET_KEY or DEBUG after
    Production(app) ran its own (Flask's tutorial sets SECRET_KEY="dev" after creating the app), over the
    FLASK_* variables Production(app) read. ConfigurationError naming what to remove, or where to move the call."""
    spec = _spec_of(app)
    if spec is not None and spec.security.refuse_unsafe:
        refuse_unsafe(app, spec, late=True)


def installed_on(app: Flask) -> Installed | None:
    """What Production's init_app made for app (its spec, metrics, probe paths); None without it. The app's own,
    where one Production() serves several apps of a factory."""
    ext = app.extensions.get(EXTENSION_KEY)
    return ext.installed_on(app) if isinstance(ext, Production) else None


def _spec_of(app: Flask) -> Spec | None:
    """The spec Production's init_app ran with for app; None without it."""
    installed = installed_on(app)
    return installed.spec if installed is not None else None


def _refusal_at_first_request(app: Flask) -> Callable[[], str | None]:
    """The refusal for servers flaskprod does not start (gunicorn 'app:create_app()'), which never call
    refuse_unsafe_as_loaded: checked at the first request; an unsafe app then answers every request 500."""
    app_ref = weakref.ref(app)
    refused: list[str] = []

    def gate() -> str | None:
        current = app_ref()
        if refused or current is None:
            return refused[0] if refused else None
        try:
            settle_as_loaded(current)
        except ConfigurationError as exc:
            refused.append(str(exc))
            current.logger.critical("refusing every request: %s", exc)
            return refused[0]
        return None

    return gate


def _max_content_length(app: Flask) -> Callable[[], int | None]:
    app_ref = weakref.ref(app)

    def limit() -> int | None:
        current = app_ref()
        value = current.config.get("MAX_CONTENT_LENGTH") if current is not None else None
        return value if isinstance(value, int) else None

    return limit


def _in_app_context(app: Flask, fn: Check) -> Check:
    # Checks run in their own threads; they may use current_app or db.session.
    def run() -> object:
        with app.app_context():
            return fn()

    return run


def _tell_if_shadowed(app: Flask, path: str, setting: str, probe: Probe) -> Probe:
    """probe, which logs a warning on its first call when the app has a view of its own at path: the probe
    answers in its place (views are added after Production(app), so init_app cannot see them)."""
    app_ref = weakref.ref(app)
    looked = False

    def probe_once_looked(environ: WSGIEnvironment) -> tuple[str, list[tuple[str, str]], bytes]:
        nonlocal looked
        if not looked:
            looked = True
            current = app_ref()
            if current is not None:
                _warn_of_shadowed_view(current, path, setting)
        return probe(environ)

    return probe_once_looked


def _warn_of_shadowed_view(app: Flask, path: str, setting: str) -> None:
    """Warn when path was the app's: a view of its own there, or one at path + "/" that werkzeug redirected path to
    (strict slashes: a blueprint with url_prefix="/metrics" and a route "/"), which only path/ reaches now."""
    rules = list(app.url_map.iter_rules())
    if any(rule.rule == path for rule in rules):
        app.logger.warning(
            "the app's own view at %s is never reached: flaskprod answers %s itself; "
            "move flaskprod's with monitoring.%s, or remove the view",
            path, path, setting,
        )
    elif any(rule.rule == path + "/" and _redirects_without_slash(app, rule) for rule in rules):
        app.logger.warning(
            "the app's own view at %s/ is no longer reached through %s, which redirected to it: flaskprod answers "
            "%s itself; the view is still reached at %s/; move flaskprod's with monitoring.%s to keep the redirect",
            path, path, path, path, setting,
        )


def _redirects_without_slash(app: Flask, rule: Rule) -> bool:
    """werkzeug redirects a rule's path without its trailing slash to it, unless strict slashes are off for it."""
    strict = rule.strict_slashes if rule.strict_slashes is not None else app.url_map.strict_slashes
    return bool(strict)


def _admitted_only(probe: Probe, allowlist: Allowlist) -> Probe:
    def guarded(environ: WSGIEnvironment) -> tuple[str, list[tuple[str, str]], bytes]:
        if not allowlist.admits(environ):
            return json_probe_response(403, {"status": "forbidden: not in monitoring.metrics_allow"})
        return probe(environ)

    return guarded


def _get_only(probe: Probe) -> Probe:
    def guarded(environ: WSGIEnvironment) -> tuple[str, list[tuple[str, str]], bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            _, headers, body = json_probe_response(405, {"status": "method not allowed"})
            return "405 METHOD NOT ALLOWED", [*headers, ("Allow", "GET, HEAD")], body
        return probe(environ)

    return guarded


def _refuse_expired() -> None:
    """A before_request hook, first in line, with metrics off: 504 to a request the pipeline found past its
    deadline, none of the app's code run (with metrics on, _count_in_progress does it)."""
    if EXPIRED_KEY in request.environ:
        raise waited_too_long()


def _count_in_progress(metrics: HttpMetrics) -> Callable[[], None]:
    """A before_request hook: the route is known only once Flask has matched it, so the gauge starts here.

    First in line, it also answers a request the pipeline found past its deadline: 504, counted under its route,
    none of the app's code run. A hook of its own (_refuse_expired, with metrics off) cost 13,600 instructions
    a request (cachegrind, /api/ping called directly: 3%), mostly Flask's ensure_sync and a proxy lookup.
    """

    def count_in_progress() -> None:
        req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not three
        method = req.method
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        rule = req.url_rule
        route = metrics.route(method, rule.rule if rule is not None else UNMATCHED)
        metrics.started(route)
        environ = req.environ
        environ[ROUTE_KEY] = route
        if EXPIRED_KEY in environ:
            raise waited_too_long()

    return count_in_progress


def _already_registered(name: str) -> str:
    return (
        f"a readiness check named {name!r} is already registered; pick another name, or add it once: at a module's "
        "top level for every app, or in the factory once its app exists (after app = Flask(...))"
    )


# How far out from add_check's caller a factory's app is looked for: helpers the factory calls to add its checks.
_FRAMES_LOOKED_AT = 16


def _called_from_module_level(frame: FrameType | None) -> bool:
    """Whether frame runs a module's top level (a decorator on a function defined there), not a function's body."""
    return frame is not None and frame.f_code.co_name == "<module>"
