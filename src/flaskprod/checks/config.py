"""Checks on the loaded app's configuration: start-up refusal, the extension, body size, proxy trust, database."""

from __future__ import annotations

import ast
import gc
import importlib.util
import ipaddress
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask

from ..dotenv import bindings
from ..errors import BuildError, FlaskprodError, SpecError
from ..render.deployment import trusted_hops
from ..render.nginx import PLACEHOLDER, answers, server_name_host, server_names
from ..render.requirements import async_without_asgiref, lacks_asgiref, requirements_file
from ..runtime.db import engine_options
from ..spec import Spec, env_for, parse_size, read_env_layer
from . import dotenv_files, nginx
from .context import (
    Context,
    ProjectFile,
    deployment_files,
    for_development,
    stand_in_environ,
    variable_read,
    walk,
)
from .engines import where_made
from .environ_reads import (
    code_defaults,
    config_choices,
    dynaconf_switches,
    environ_reads,
    for_production,
    left_to_development_default,
    reads_environ,
)
from .registry import CRITICAL, ERROR, WARNING, Found, app_check, check
from .security import deployed_values


@check(
    "FP-C001",
    CRITICAL,
    "the app refuses to start: Production(app) rejected its configuration",
    hint="fix what the message names; meanwhile the app's other checks run on it loaded with the refusal off "
    "(security.refuse_unsafe = false), and name its key and debug mode as they are",
)
def refused(context: Context) -> Iterator[Found]:
    if context.refused is None:
        return
    if context.app is None:  # the stand-in did not start it either: say that nothing else of the app was seen
        why = context.unloaded or "it refuses to start with the refusal off too"
        text = f"{context.refused} (the app's other checks did not run: {why})"
        yield Found(obj=context.app_label, text=text, hint="fix what the message names, then run check again")
    else:
        yield Found(obj=context.app_label, text=context.refused)


@check(
    "FP-C017",
    CRITICAL,
    "the app fails at start: app.config.from_envvar() loads its config from the file an environment variable "
    "names, and the variable is not set (the app's other checks did not run)",
    hint="set the variable to the production config file's path wherever the app runs (ENV in the Dockerfile, "
    "the service's environment in Compose or Kubernetes, Environment= in a systemd unit), and where check runs, "
    "so that it audits that file too",
)
def settings_file_unread(context: Context) -> Iterator[Found]:
    unread = context.settings_unread
    if unread is None:
        return
    call = f'app.config.from_envvar("{unread.variable}")'
    obj = unread.where or context.app_label
    if unread.value is None:
        yield Found(
            obj=obj,
            text=f"the app fails at start: {call} loads its config from the file {unread.variable} names, and "
            f"{unread.variable} is not set (the app's other checks did not run)",
        )
        return
    yield Found(
        obj=obj,
        text=f"the app fails at start: {call} loads its config from {unread.value!r}, the file {unread.variable} "
        f"names, and cannot read it ({unread.reason}; the app's other checks did not run)",
        hint=f"point {unread.variable} at the config file: an absolute path, or one relative to the app's "
        "root_path (the folder of its module or package), not to the current directory",
    )


@check(
    "FP-C018",
    CRITICAL,
    "the app fails at start: it reads an environment variable with os.environ[...] that is not set where check "
    "runs (the app's other checks did not run)",
    hint="set the variable wherever the app runs (ENV in the Dockerfile, the service's environment in Compose or "
    "Kubernetes, Environment= in a systemd unit, the platform's config vars), and where check runs, so that it "
    "audits the app too",
)
def variable_unset(context: Context) -> Iterator[Found]:
    unset = context.variable_unset
    if unset is not None:
        yield Found(
            obj=unset.where or context.app_label,
            text=f"the app fails at start: it reads os.environ[{unset.variable!r}], and {unset.variable} is not set "
            "where check runs (the app's other checks did not run)",
        )


@app_check(
    "FP-C002",
    WARNING,
    "Production(app) is not installed: no /healthz and /readyz probes, no /metrics, no JSON logs, no proxy "
    "handling, no refusal of a weak SECRET_KEY",
    hint="add `from flaskprod import Production` and call `Production(app)` where the app is created",
)
def production_missing(app: Flask, context: Context) -> Iterator[Found]:
    if context.production is None:
        yield Found(obj=context.app_label)


@app_check(
    "FP-C003",
    WARNING,
    "MAX_CONTENT_LENGTH is unset: the app reads request bodies of any size, while nginx stops at client_max_body_size",
    hint="install Production(app) (it sets it from proxy.max_body_size, as nginx does) or set MAX_CONTENT_LENGTH",
)
def body_limit(app: Flask, context: Context) -> Iterator[Found]:
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        yield Found(obj=context.app_label)


@app_check(
    "FP-C022",
    WARNING,
    "proxy.max_body_size is set, but the app sets MAX_CONTENT_LENGTH itself: Flask and nginx's client_max_body_size "
    "follow the app's value, and the setting goes unused",
    hint="remove MAX_CONTENT_LENGTH from the app's config so that proxy.max_body_size sets it, or set the size you "
    "want there and remove proxy.max_body_size",
)
def body_size_setting_unused(app: Flask, context: Context) -> Iterator[Found]:
    # Production(app) keeps a value the app chose, and build and up give nginx what the app loaded: the setting is
    # for an app with none (or None, where it bounds nginx alone).
    origin = context.spec.origins.get("proxy.max_body_size", "default")
    actual = app.config.get("MAX_CONTENT_LENGTH")
    if origin == "default" or not isinstance(actual, int):
        return
    value = context.spec.proxy.max_body_size
    try:
        wanted = parse_size(value)
    except ValueError:
        return
    if actual != wanted:
        yield Found(
            obj=Path(origin.removeprefix("file ")).name if origin.startswith("file ") else context.app_label,
            text=f"proxy.max_body_size is {value} ({wanted} bytes), but the app sets MAX_CONTENT_LENGTH to {actual} "
            "itself: Flask and nginx's client_max_body_size follow the app's value, so bodies over "
            f"{actual} bytes get 413 and the setting goes unused",
        )


_FLASK_ENV = re.compile(r"\bFLASK_ENV\b")
_FLASK_ENV_REMOVED = (
    "FLASK_ENV is used, but Flask 2.3 removed it: it no longer turns debug or production mode on or off"
)


@check(
    "FP-C004",
    WARNING,
    _FLASK_ENV_REMOVED,
    hint="remove it; use FLASK_DEBUG (or `flask run --debug`) for development, and nothing in production",
)
def flask_env(context: Context) -> Iterator[Found]:
    # An app that reads FLASK_ENV itself (cookiecutter-flask: DEBUG = ENV == "development") still acts on it.
    readers = [
        item.at(node.lineno)
        for item, tree in context.python_files()
        for node in walk(tree)
        if isinstance(node, ast.expr) and variable_read(node) == "FLASK_ENV"
    ]
    # dynaconf's FlaskDynaconf picks [production] by it: removing it would load [development].
    dynaconf = [at for variable, at in context.once(dynaconf_switches) if variable == "FLASK_ENV"]
    readers += dynaconf
    text = hint = None
    if readers:
        where = ", ".join(readers)
        text = (
            f"FLASK_ENV is used, but Flask 2.3 removed it: only the app's own code reads it now ({where}), so what "
            "it sets there (debug, say) and what Flask and its extensions see can differ"
        )
        hint = (
            "give the app's own setting a name of its own (APP_ENV), or derive debug from FLASK_DEBUG alone; "
            "keep development values out of production files"
        )
    if dynaconf:
        hint = (
            f"FlaskDynaconf ({dynaconf[0]}) picks its settings environment by FLASK_ENV: keep it set to production "
            'wherever the app runs, or give dynaconf a switch of its own (FlaskDynaconf(app, ENV_SWITCHER="APP_ENV")) '
            "and set that instead"
        )
    if "FLASK_ENV" in context.environ:
        yield Found(
            obj="environment", text=text or "FLASK_ENV is set in the environment, but Flask 2.3 removed it", hint=hint
        )
    # One finding per cause, at its first place, naming the others: the code that reads it (renamed there) and the
    # files that set it (removed or renamed there), not one per line of each.
    for places in _flask_env_places(context):
        yield Found(obj=places[0], text=_naming_the_rest(text, places, readers), hint=hint)


def _flask_env_places(context: Context) -> list[list[str]]:
    """file:line of each uncommented line naming FLASK_ENV, in two groups in the order they first appear: the
    project's Python code, and its other files."""
    groups: dict[bool, list[str]] = {}
    for item in context.files:
        for line, line_text in item.lines():
            if _FLASK_ENV.search(line_text) and not line_text.lstrip().startswith("#"):
                groups.setdefault(item.path.suffix == ".py", []).append(item.at(line))
    return list(groups.values())


def _naming_the_rest(text: str | None, places: list[str], named: list[str]) -> str | None:
    """text (None: the check's own), with the places after the first that it does not name already."""
    rest = [place for place in places[1:] if place not in named]
    if not rest:
        return text
    return f"{text or _FLASK_ENV_REMOVED} (also at {', '.join(rest)})"


def _nginx_proxies(context: Context) -> Iterator[tuple[ProjectFile, int]]:
    """(file, line) of each proxy_pass in the project's nginx configuration, but one named for development."""
    for item in deployment_files(context.files_named("*.conf", "nginx.conf*")):
        for line, _ in nginx.named(item, "proxy_pass"):
            yield item, line


def _middleware(app: Flask) -> Iterator[Any]:
    """app.wsgi_app and what it wraps, outermost first."""
    from ..runtime.proxy import middleware_chain

    return middleware_chain(app.wsgi_app)


def _has_proxy_fix(app: Flask) -> bool:
    """True when a ProxyFix (werkzeug's, or Production's own) wraps the app, directly or below other middleware."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    from ..runtime.proxy import TrustedProxies

    return any(isinstance(node, (ProxyFix, TrustedProxies)) for node in _middleware(app))


@app_check(
    "FP-C005",
    WARNING,
    "nginx proxies to the app, but the app trusts no X-Forwarded-* header: request.remote_addr is nginx's "
    "address, request.scheme is http behind TLS, and url_for(_external=True) builds wrong URLs",
    hint="set proxy.trusted_hops to the number of proxies in front (1 for nginx) with Production(app) "
    "installed, or wrap app.wsgi_app in werkzeug's ProxyFix",
)
def proxy_headers(app: Flask, context: Context) -> Iterator[Found]:
    first = next(_nginx_proxies(context), None)
    if first is not None and not _has_proxy_fix(app) and not any(hops for _, hops in _deployed_hops(context)):
        item, line = first
        yield Found(obj=item.at(line))


_HOPS_VARIABLE = "FLASKPROD_PROXY__TRUSTED_HOPS"


def _deployed_hops(context: Context) -> list[tuple[str, int]]:
    """(file:line, hops) of each proxy.trusted_hops the deployment's files give Production(app) through
    FLASKPROD_PROXY__TRUSTED_HOPS (Compose's environment, a Dockerfile's ENV, Kubernetes env, systemd Environment=):
    what it trusts where it runs, though check's own environment does not set it. Empty without Production(app),
    which alone reads it."""
    if context.production is None:
        return []
    found = ((item.at(line), value.strip()) for item, line, value in deployed_values(context, _HOPS_VARIABLE))
    return [(where, int(value)) for where, value in found if value.isdigit()]


def _named_where_deployed(hops: int, here: tuple[str, int] | None, deployed: list[tuple[str, int]]) -> bool:
    """True when the app's hops are the environment's, and a deployment file's finding names that count too."""
    return here is not None and here[1] == hops and any(count == hops for _, count in deployed)


def _environ_hops(context: Context) -> tuple[str, int] | None:
    """The variable (as spelled) and hops of proxy.trusted_hops in the environment check runs in, as the spec reads
    it (FLASKPROD_PROXY__TRUSTED_HOPS, the section and name in any case)."""
    try:
        layer = read_env_layer(context.environ)
    except SpecError:
        return None  # the spec refuses it, and says so
    value = str(layer.get("proxy.trusted_hops", "")).strip()
    return (layer.names["proxy.trusted_hops"], int(value)) if value.isdigit() else None


_NO_PRE_PING = (
    "the SQLAlchemy pool does not pre-ping: after a database restart or an idle timeout, requests fail "
    "on dead pooled connections"
)


@app_check(
    "FP-C006",
    WARNING,
    _NO_PRE_PING,
    hint="call Production(app) before db.init_app(app) (it sets pool_pre_ping and pool_recycle), or set "
    "SQLALCHEMY_ENGINE_OPTIONS = {'pool_pre_ping': True}",
)
def pool_pre_ping(app: Flask, context: Context) -> Iterator[Found]:
    if "sqlalchemy" not in app.extensions:
        return
    if context.installed is not None and not context.installed.spec.database.pre_ping:
        return  # turned off on purpose in the spec
    # Flask-SQLAlchemy reads the options once, in db.init_app, and leaves an empty dict behind: Production(app)
    # called after it finds the key taken and adds nothing, so the config is what the engines got.
    options = app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
    # Where the app chose, either way: SQLALCHEMY_ENGINE_OPTIONS for the default engine, a bind's own options for
    # it (binds do not inherit SQLALCHEMY_ENGINE_OPTIONS, nor what Production(app) puts there).
    chosen: set[str | None] = {None} if "pool_pre_ping" in options else set()
    binds = app.config.get("SQLALCHEMY_BINDS") or {}
    chosen |= {key for key, value in binds.items() if isinstance(value, dict) and "pool_pre_ping" in value}
    engines = _engines(app)
    if engines is None:  # not Flask-SQLAlchemy 3's engines, which show what each got: the config decides
        missing: list[str | None] = [] if None in chosen else [None]
    else:  # SQLAlchemy(engine_options=...) counts too
        missing = [key for key, engine in engines.items() if key not in chosen and _pools_without_pre_ping(engine)]
    if None in missing:
        hint = None
        if options:
            hint = (
                "the app sets SQLALCHEMY_ENGINE_OPTIONS itself, so Production(app) adds nothing to it: add "
                "'pool_pre_ping': True (and 'pool_recycle') to it"
            )
        yield Found(obj=context.app_label, hint=hint)
    bind_keys = [key for key in missing if key is not None]
    if bind_keys:
        names = ", ".join(repr(key) for key in bind_keys)
        yield Found(
            obj=context.app_label,
            text=_NO_PRE_PING.replace("the SQLAlchemy pool does", f"the SQLAlchemy pool of bind {names} does", 1),
            hint="a bind takes only its own options (not SQLALCHEMY_ENGINE_OPTIONS, where Production(app) puts "
            "them): give it {'url': ..., 'pool_pre_ping': True} in SQLALCHEMY_BINDS",
        )


def _engines(app: Flask) -> dict[str | None, Any] | None:
    """Flask-SQLAlchemy 3's engines for the app, by bind key; None when they cannot be read."""
    extension = app.extensions["sqlalchemy"]
    try:
        with app.app_context():
            return dict(extension.engines)
    except Exception:  # another version, or an app whose engines fail to start: the config decides
        return None


def _pools_without_pre_ping(engine: Any) -> bool:
    """True for a pool that keeps connections and does not test them before use (NullPool keeps none)."""
    from sqlalchemy.pool import NullPool

    pool = getattr(engine, "pool", None)
    return pool is not None and not isinstance(pool, NullPool) and not getattr(pool, "_pre_ping", False)


@app_check(
    "FP-C007",
    WARNING,
    "an SQLAlchemy engine the app makes itself keeps a pool flaskprod did not size: every worker process of "
    "every replica holds that many connections, which together can pass database.connection_budget and the "
    "database's max_connections",
    hint="make it with flaskprod's pool: create_engine(url, **flaskprod.pool_options(url)), sized like "
    "Flask-SQLAlchemy's from the workers within database.connection_budget, with pre-ping",
)
def own_engine_pools(app: Flask, context: Context) -> Iterator[Found]:
    if "sqlalchemy" not in sys.modules:  # an app that never imported it made no engine
        return
    from sqlalchemy.engine import Engine

    made_by_extension = (_engines(app) or {}) if "sqlalchemy" in app.extensions else {}
    flask_sqlalchemy = {id(engine) for engine in made_by_extension.values()}
    for engine in (obj for obj in gc.get_objects() if isinstance(obj, Engine)):
        pool = engine.pool
        size, overflow = getattr(pool, "size", None), getattr(pool, "_max_overflow", None)
        if id(engine) in flask_sqlalchemy or engine.dialect.name == "sqlite" or not callable(size) or overflow is None:
            continue  # Production(app) sizes Flask-SQLAlchemy's; SQLite's and NullPool's hold no server's connections
        url = engine.url.render_as_string(hide_password=True)
        share = engine_options(context.effective_spec, url)
        if (size(), overflow) == (share.get("pool_size"), share.get("max_overflow")):
            continue
        yield Found(
            obj=where_made(context, engine.url) or context.app_label,
            text=f"the SQLAlchemy engine for {url} keeps {size()} + {overflow} connections in every worker process, "
            f"not the {share['pool_size']} + {share['max_overflow']} flaskprod shares out of "
            f"database.connection_budget ({context.effective_spec.database.connection_budget}): with every worker "
            "and replica it can pass the budget and the database's max_connections",
        )


_SQLITE_OUTSIDE_INSTANCE = (
    "the app's SQLite database{file} is a file in the project outside Flask's instance folder{instance}, the one "
    "folder the built containers and the VM's unit let the app write (its code is read-only there, owned by root; "
    "Kubernetes' pods write neither): the release command that creates the tables, and every write, fail there "
    "with 'unable to open database file'"
)
_SQLITE_HINT = (
    "keep it in the instance folder, which the images and the VM keep as a volume: 'sqlite:///name.sqlite' "
    "(Flask-SQLAlchemy 3 puts a relative path there) or os.path.join(app.instance_path, 'name.sqlite'); or use a "
    "database server through DATABASE_URL (`flaskprod build --with postgres`), as Kubernetes needs"
)


@app_check(
    "FP-C020",
    WARNING,
    _SQLITE_OUTSIDE_INSTANCE.format(file="", instance=""),
    hint=_SQLITE_HINT,
)
def sqlite_outside_instance(app: Flask, context: Context) -> Iterator[Found]:
    # `up` copies the project into a release it may write, so the file works there: the built targets are the
    # ones where the app's code is read-only (Flasky's "sqlite:///" + os.path.join(basedir, "data.sqlite")).
    if "sqlalchemy" not in app.extensions:
        return
    root = context.root.resolve()
    instance = Path(app.instance_path).resolve()
    for key, engine in (_engines(app) or {}).items():
        path = _sqlite_file(engine.url, root)
        if path is None or not path.is_relative_to(root) or path.is_relative_to(instance):
            continue
        name = path.relative_to(root).as_posix() + ("" if key is None else f" (bind {key!r})")
        text = _SQLITE_OUTSIDE_INSTANCE.format(file=f" {name}", instance=f" ({_relative(instance, root)})")
        hint = None
        fallback = _fallback_of(context, path.name)
        if fallback is not None:
            variable, read_at = fallback
            if variable in dotenv_files.passed_names(context):
                continue  # the deployment sets it: the file is the development machine's alone
            text = text.replace(
                " is a file in the project",
                f" is the fallback of {variable} (read at {read_at}), which is unset where check runs and set by "
                "no deployment file: a file in the project",
                1,
            )
            hint = _fallback_hint(variable, context.spec.database.url_env)
        choice = left_to_development_default(context)
        if choice is not None:  # the development config loaded, as it will in every deployment: that is the fix
            text += (
                f"; and {choice.variable} (read at {choice.read_at}) is unset, so the app loaded the code's default "
                f"config, {choice.default!r}, as every deployment that leaves it unset will"
            )
            hint = (
                f"set {choice.variable} to the production config wherever the app runs, and where check runs to "
                "audit that config's database, or make production the code's default"
            )
        yield Found(obj=_written_at(context, path.name) or context.app_label, text=text, hint=hint)


def _fallback_of(context: Context, name: str) -> tuple[str, str] | None:
    """(variable, file:line of its read) when the string that ends with the database file's name is the fallback of
    an environment read in the same expression (os.environ.get("DATABASE_URL") or "sqlite:///" + ..., microblog's
    and Flasky's; os.environ.get("DATABASE_URL", "sqlite:///..."); a conditional on the variable): a deployment
    that sets the variable never opens the file. None when no such read is found, or several files build it."""
    found: set[tuple[str, str]] = set()
    for item, tree in context.python_files():
        if name not in item.text or for_development(item.rel):
            continue
        # The smallest `or`, conditional or environment read around each string naming the file.
        candidates = sorted(
            (n for n in walk(tree) if isinstance(n, (ast.BoolOp, ast.IfExp)) or reads_environ(n)),
            key=lambda n: len(list(ast.walk(n))),
        )
        for constant in walk(tree):
            if not (isinstance(constant, ast.Constant) and isinstance(constant.value, str)):
                continue
            if not constant.value.endswith(name):
                continue
            for node in candidates:
                if any(child is constant for child in ast.walk(node)):
                    reads = list(environ_reads(node))
                    if reads:
                        variable, _, read = reads[0]
                        found.add((variable, item.at(read.lineno)))
                        break
    return found.pop() if len(found) == 1 else None


def _fallback_hint(variable: str, url_env: str) -> str:
    given = (
        "`flaskprod build --with postgres` sets it in every target"
        if variable == url_env
        else f"`flaskprod build --with postgres` sets it with url_env = \"{variable}\" under [database]"
    )
    return (
        f"set {variable} to a database server's URL wherever the app runs ({given}), so that the file is never "
        "opened there; or make the fallback a file in the instance folder, which the images and the VM keep as a "
        "volume: 'sqlite:///name.sqlite' (Flask-SQLAlchemy 3 puts a relative path there) or "
        "os.path.join(app.instance_path, 'name.sqlite')"
    )


def _sqlite_file(url: Any, root: Path) -> Path | None:
    """The file an SQLAlchemy URL's SQLite database is, as a server started in root opens it; None for another
    database, or one in memory."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or url.query.get("mode") == "memory":
        return None
    path = Path(database.removeprefix("file:"))  # SQLite's URI filenames (?uri=true)
    return (path if path.is_absolute() else root / path).resolve()


def _written_at(context: Context, name: str) -> str | None:
    """file:line of the one string in the project's modules that ends with the database file's name (where the
    config builds its URL), outside files named for development; None when none, or several, do."""
    lines = {
        item.at(node.lineno)
        for item, tree in context.python_files()
        if name in item.text and not for_development(item.rel)
        for node in walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(name)
    }
    return lines.pop() if len(lines) == 1 else None


def _relative(folder: Path, root: Path) -> str:
    return folder.relative_to(root).as_posix() if folder.is_relative_to(root) else folder.as_posix()


@check(
    "FP-C021",
    WARNING,
    "an environment variable set where check runs, and in no deployment file, picks the config the app loads "
    "(app.config.from_object): check, build and `up` saw that config, and the built targets load the one the "
    "code picks without it",
    hint="make the production config the code's default, so every deployment loads it wherever the variable is "
    "unset (os.environ.get('NAME', 'production')), and set the variable for development alone; or set it in each "
    "deployment's environment",
)
def config_picked_by_shell(context: Context) -> Iterator[Found]:
    passed: set[str] | None = None  # read once a choice is set here
    named: set[tuple[str, str]] = set()  # (variable, read_at): a read that reaches two from_object calls, once
    for choice in context.once(config_choices):
        value = context.environ.get(choice.variable)
        if value is None or value == choice.default or choice.variable.startswith("FLASKPROD_"):
            continue
        if choice.default is not None and for_production(choice.default):
            continue  # deployments load the production config, whatever a developer's shell picks
        if (choice.variable, choice.read_at) in named:
            continue
        named.add((choice.variable, choice.read_at))
        passed = dotenv_files.passed_names(context) if passed is None else passed
        if choice.variable in passed:
            continue
        loads = (
            f"load the config of its default, {choice.default!r}, instead"
            if choice.default is not None
            else "fail at start, as it is unset"
            if choice.required
            else "run without it"
        )
        yield Found(
            obj=choice.read_at,
            text=f"{choice.variable} picks the config the app loads (app.config.from_object at {choice.loaded_at}), "
            f"and is set where check runs ({value!r}) but in no deployment file: the built targets, and `up` or "
            f"`serve` started without it, {loads}",
        )


@app_check(
    "FP-C008",
    WARNING,
    "the app wraps itself in werkzeug's ProxyFix, and Production(app) reads the X-Forwarded-* headers too (behind "
    "nginx, in `flaskprod up` and every target): the inner reading wins whatever proxy.trusted_hops says, and "
    "werkzeug.proxy_fix.orig records values the other already rewrote",
    hint="remove the app's ProxyFix: Production(app) trusts proxy.trusted_hops proxies, 1 behind nginx; under "
    "`flaskprod up` or `serve`, proxy.trusted_hops = 0 keeps the app's own (build's targets refuse it: their nginx "
    "is the one proxy the app trusts)",
)
def proxy_fix_twice(app: Flask, context: Context) -> Iterator[Found]:
    from werkzeug.middleware.proxy_fix import ProxyFix

    if context.installed is None:
        return
    spec = context.installed.spec  # the app's own: one Production() may serve several apps of a factory
    # 0 set on purpose stays 0 behind nginx too: Production then leaves the headers to the app's ProxyFix.
    chosen = spec.origins.get("proxy.trusted_hops", "default") != "default"
    if chosen and spec.proxy.trusted_hops == 0:
        return
    if any(isinstance(node, ProxyFix) for node in _middleware(app)):
        yield Found(obj=context.app_label)


def _proxies_in_front() -> int:
    """How many proxies are in front of an app behind nginx, as `build` and `up` count them: the hops they give an
    app that leaves proxy.trusted_hops to them (render/deployment.py's trusted_hops)."""
    return trusted_hops(Spec())


# ProxyFix's settings, each the hops it trusts for one header.
_PROXY_FIX_HEADERS = {
    "x_for": "X-Forwarded-For",
    "x_proto": "X-Forwarded-Proto",
    "x_host": "X-Forwarded-Host",
    "x_port": "X-Forwarded-Port",
    "x_prefix": "X-Forwarded-Prefix",
}


@app_check(
    "FP-C016",
    WARNING,
    "the app trusts the X-Forwarded-* headers of more proxies than are in front of it: a client sends its own "
    "X-Forwarded-For, nginx passes it on, and the app takes the address the client wrote for the client's",
    hint="trust as many hops as there are proxies in front, 1 behind nginx alone: remove proxy.trusted_hops (build "
    "and up set 1) or set it to 1; give a ProxyFix of the app's own x_for=1 and x_proto=1. A load balancer in front "
    "of nginx that sets X-Forwarded-For too is one more: then the count is right, and silence FP-C016",
)
def proxy_hops_beyond_nginx(app: Flask, context: Context) -> Iterator[Found]:
    from werkzeug.middleware.proxy_fix import ProxyFix

    from ..runtime.proxy import TrustedProxies

    first = next(_nginx_proxies(context), None)
    if first is None:
        return  # what is in front is not in the project: only the deployment knows how many hops there are
    in_front = _proxies_in_front()
    behind = f"{in_front} proxy is in front of the app, nginx ({first[0].at(first[1])})"
    here = _environ_hops(context)
    deployed = [(where, hops) for where, hops in _deployed_hops(context) if hops > in_front]
    for where, hops in deployed:
        too = f", as {here[0]}={hops} does in the environment check runs in" if here and here[1] == hops else ""
        yield Found(
            obj=where,
            text=f"{_HOPS_VARIABLE}={hops} sets proxy.trusted_hops where this file deploys the app{too}, but {behind}: "
            "a client sends its own X-Forwarded-For, nginx passes it on, and the app takes the address the client "
            "wrote for the client's; `flaskprod build` and `up` refuse it",
        )
    for node in _middleware(app):
        if isinstance(node, TrustedProxies) and _named_where_deployed(node.hops, here, deployed):
            continue  # the environment's count, which a deployment file sets too: named there, once
        if isinstance(node, TrustedProxies) and node.hops > in_front:
            yield Found(
                obj=context.app_label,
                text=f"proxy.trusted_hops = {node.hops}, but {behind}: a client sends its own X-Forwarded-For, nginx "
                "passes it on, and the app takes the address the client wrote for the client's; `flaskprod build` "
                "and `up` refuse it",
            )
        elif isinstance(node, ProxyFix):
            beyond = {key: getattr(node, key) for key in _PROXY_FIX_HEADERS if getattr(node, key) > in_front}
            if not beyond:
                continue
            forged = _PROXY_FIX_HEADERS["x_for" if "x_for" in beyond else next(iter(beyond))]
            given = ", ".join(f"{key}={hops}" for key, hops in beyond.items())
            yield Found(
                obj=context.app_label,
                text=f"the app's ProxyFix trusts {max(beyond.values())} proxy hops ({given}), but {behind}: a client "
                f"sends its own {forged}, nginx passes it on, and the app takes what the client wrote",
                hint=f"give ProxyFix {in_front} hop for each header: "
                f"ProxyFix(app.wsgi_app, {', '.join(f'{key}={in_front}' for key in beyond)})",
            )


def _local(host: str) -> bool:
    """localhost or a loopback address: a name for this machine, which no certificate authority or Ingress serves."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


@app_check(
    "FP-C009",
    WARNING,
    "a host the app calls itself (SERVER_NAME) or routes (host_matching) that proxy.server_name does not name: nginx "
    "answers it too, in `flaskprod up` and every target, but the TLS certificate (--with tls, up --tls) and "
    "Kubernetes' Ingress are made for proxy.server_name's names alone, so HTTPS or the Ingress fails requests for it",
    hint="add the host to proxy.server_name (server_name under [proxy] in flaskprod.toml)",
)
def server_name_unserved(app: Flask, context: Context) -> Iterator[Found]:
    spec = context.effective_spec
    # Left to its default, proxy.server_name names no public site yet: nginx answering the app's hosts is enough.
    configured = spec.origins.get("proxy.server_name", "default") != "default"
    names = server_names(spec, spec.proxy.host)

    def unnamed(host: str) -> bool:
        return configured and not _local(host) and not any(answers(host, name) for name in names)

    value = app.config.get("SERVER_NAME")
    if isinstance(value, str) and value:
        host = server_name_host(value)
        if host is None:
            yield Found(
                obj=context.app_label,
                text=f"the app's SERVER_NAME is {value!r}, no host name or address with an optional port: nginx "
                "cannot answer it, and the URLs the app builds for it are broken",
                hint="set SERVER_NAME to the site's host, such as example.com (example.com:8443 off the scheme's port)",
            )
        elif unnamed(host):
            yield Found(
                obj=context.app_label,
                text=f"the app's SERVER_NAME is {value!r}, a host proxy.server_name ({spec.proxy.server_name!r}) "
                "does not name: nginx answers it too, but the TLS certificate (--with tls, up --tls) and Kubernetes' "
                "Ingress are made for proxy.server_name's names alone, so HTTPS or the Ingress fails requests for it",
            )
    from ..servers.probe import routed_hosts

    # A pattern's host stands for the names it routes by one of them: <tenant>.example.com by x.example.com.
    hosts = {pattern: server_name_host(PLACEHOLDER.sub("x", pattern)) for pattern in routed_hosts(app)}
    missed = [pattern for pattern, host in hosts.items() if host is not None and unnamed(host)]
    if missed:
        yield Found(
            obj=context.app_label,
            text=f"the app routes {', '.join(map(repr, missed))} (host_matching), which proxy.server_name "
            f"({spec.proxy.server_name!r}) does not name: nginx answers them too, but the TLS certificate (--with "
            "tls, up --tls) and Kubernetes' Ingress are made for proxy.server_name's names alone, so HTTPS or the "
            "Ingress fails requests for them",
        )


@app_check(
    "FP-C011",
    ERROR,
    "the app has WebSocket routes (flask-sock's, Flask-SocketIO's), and the app server the spec names cannot hold "
    "them: uWSGI cannot hand a view the client's connection, Gunicorn's sync worker holds a process for each until "
    "its timeout kills it, Flask-SocketIO's sessions live in the one process that opened each, and on eventlet "
    "(its pick when eventlet is installed) or on gevent outside Gunicorn's gevent worker it answers no client; `up`, "
    "`serve` and `build` refuse to start it so",
    hint='leave server.kind = "auto" (it picks Gunicorn for such an app) or set "gunicorn", with server.threads '
    "above 1, and for Flask-SocketIO one worker and one replica (server.workers, deploy.replicas), and "
    "SocketIO(async_mode='threading') or server.worker_class = \"gevent\" with gevent",
)
def websockets_unheld(app: Flask, context: Context) -> Iterator[Found]:
    from ..servers.probe import socketio_mode, socketio_path, websocket_routes
    from ..servers.websockets import for_conversations, on_one_replica, replicas_problem, websocket_problem

    socketio = socketio_path(app)
    mode = (socketio_mode_served(context) or socketio_mode(app)) if socketio else None
    paths = [*websocket_routes(app), *([socketio] if socketio else [])]
    # As up, serve and build resolve auto for such an app: Gunicorn, and for Flask-SocketIO one worker and replica,
    # of the gevent class when it runs on gevent.
    spec = for_conversations(on_one_replica(context.spec, mode), paths, socketio=mode)
    if spec.server.kind == "auto":
        spec = spec.replace(**{"server.kind": "gunicorn"})
    problem = websocket_problem(spec, paths, socketio=mode)
    problem = problem or replicas_problem(spec, mode)
    if problem:
        yield Found(obj=context.app_label, text=problem)


def socketio_mode_served(context: Context) -> str | None:
    """The async_mode the app's Flask-SocketIO runs in under a server, learnt as `serve` learns it: by loading the
    app in a child. Here it loaded with FLASK_RUN_FROM_CLI set (so that a stray socketio.run() returns), under
    which Flask-SocketIO picks threading, whatever is installed. None when that load fails."""
    from ..servers.probe import probe

    env: dict[str, str | None] = {**os.environ, **env_for(context.spec.flagged())}
    if context.refused:
        env.update(stand_in_environ())
    given = {name: value for name, value in env.items() if value is not None}
    try:
        return probe(context.ref, given, bound=context.spec.proxy.ready_timeout).socketio_mode
    except FlaskprodError:
        return None


@app_check(
    "FP-C010",
    WARNING,
    "the app has async views, which Flask runs with asgiref, and the requirements its deployment installs have "
    "none: each answers 500 (\"Install Flask with the 'async' extra in order to use async views\")",
    hint="write flask[async] instead of flask in the requirements (or pyproject.toml's dependencies), or add asgiref",
)
def async_views_without_asgiref(app: Flask, context: Context) -> Iterator[Found]:
    from ..servers.probe import async_views

    views = async_views(app)
    if not views:
        return
    try:
        name = requirements_file(context.spec.deploy.requirements, context.root)
        lacking = lacks_asgiref(context.root, name)
    except BuildError:  # no requirements, or an include that is missing: what runs the app here is what it has
        name, lacking = None, importlib.util.find_spec("asgiref") is None
    if lacking:
        where = name or ("pyproject.toml" if (context.root / "pyproject.toml").is_file() else "this environment")
        yield Found(obj=context.app_label, text=async_without_asgiref(views, where))


@app_check(
    "FP-C012",
    WARNING,
    "Flask-Limiter counts in each worker process's memory (memory:// storage, its default): with several worker "
    "processes (flaskprod runs at least 2) a limit lets as many times the requests through, and every restart or "
    "deploy forgets the counts",
    hint="point RATELIMIT_STORAGE_URI (or Limiter(storage_uri=...)) at a store the processes share: redis://, "
    "memcached:// or mongodb://, as the limits library names them",
)
def rate_limits_per_process(app: Flask, context: Context) -> Iterator[Found]:
    for limiter in app.extensions.get("limiter") or ():
        storage = getattr(limiter, "_storage", None)
        if type(storage).__name__ == "MemoryStorage":
            yield Found(obj=context.app_label)
            return


# Flask-Caching's backends that keep their entries in the process: each worker has a cache of its own.
_PROCESS_CACHES = frozenset({"SimpleCache"})


@app_check(
    "FP-C013",
    WARNING,
    "Flask-Caching's SimpleCache keeps a cache in each worker process: an entry one process deletes or replaces "
    "stays in the others' until it expires, so requests answer with old data depending on the worker they reach",
    hint='use a cache the processes share: CACHE_TYPE = "RedisCache" or "MemcachedCache" (FileSystemCache shares '
    "one folder between the processes of one machine, not between replicas)",
)
def cache_per_process(app: Flask, context: Context) -> Iterator[Found]:
    for backend in (app.extensions.get("cache") or {}).values():
        if type(backend).__name__ in _PROCESS_CACHES:
            yield Found(obj=context.app_label)
            return


# The media type of a stream of server-sent events.
_EVENT_STREAM = "text/event-stream"


@app_check(
    "FP-C014",
    WARNING,
    "the app streams server-sent events (text/event-stream), and its workers have no threads set aside for them "
    "(server.conversation_threads): each open stream holds one of a worker's server.threads for as long as it "
    "lasts, so once as many listeners are connected as the workers have threads, every other request waits until "
    "nginx answers 504",
    hint="set conversation_threads under [server] in flaskprod.toml to the streams one worker should hold at once "
    "(100 is what an app with WebSocket routes gets)",
)
def event_streams_without_threads(app: Flask, context: Context) -> Iterator[Found]:
    from ..servers.probe import socketio_path, websocket_routes
    from ..sizing import GREENLET_CLASSES, worker_class

    server = context.spec.server
    if server.conversation_threads != "auto" or worker_class(context.spec) in GREENLET_CLASSES:
        return  # set (0 too, on purpose), or greenlets rather than threads
    if websocket_routes(app) or socketio_path(app):
        return  # auto gives such an app its conversation threads
    if any(bp.import_name.split(".")[0] == "flask_sse" for bp in app.blueprints.values()):
        yield Found(obj=context.app_label)  # Flask-SSE's blueprint streams them
        return
    for item in context.files:
        for node in walk(item.tree) if item.tree is not None else ():
            if isinstance(node, ast.Constant) and str(node.value).strip().lower().startswith(_EVENT_STREAM):
                yield Found(obj=item.at(node.lineno))
                return


# SQLAlchemy's names of drivers that wait for the database inside C, where gevent cannot switch: mysqlclient,
# MariaDB's connector, cx_Oracle, pyodbc. PyMySQL and python-oracledb's thin mode wait on Python's sockets, which
# gevent's patches make wait in its loop; psycopg 3 waits there itself, and psycopg2 in flaskprod's wait callback.
_BLOCKING_DRIVERS = frozenset({"mysqldb", "mariadbconnector", "cx_oracle", "pyodbc"})


@app_check(
    "FP-C015",
    WARNING,
    "the app's database driver waits for the database inside C, where gevent cannot switch, and its workers run on "
    "gevent (server.worker_class, or Flask-SocketIO on gevent): each query holds every request of its worker until "
    "it returns",
    hint="use a driver that waits on Python's sockets (PyMySQL for MySQL: mysql+pymysql://; python-oracledb's thin "
    'mode for Oracle), or serve the app on threads (server.worker_class = "gthread")',
)
def blocking_driver_on_gevent(app: Flask, context: Context) -> Iterator[Found]:
    if "sqlalchemy" not in sys.modules:
        return
    from sqlalchemy.engine import Engine

    blocking = [o for o in gc.get_objects() if isinstance(o, Engine) and o.dialect.driver in _BLOCKING_DRIVERS]
    # The worker class last: for a Flask-SocketIO app it loads the app in a child, as FP-C011 did already.
    if not blocking or _served_worker_class(app, context) != "gevent":
        return
    for engine in blocking:
        yield Found(
            obj=where_made(context, engine.url) or context.app_label,
            text=f"the SQLAlchemy engine for {engine.url.render_as_string(hide_password=True)} waits in "
            f"{engine.dialect.driver}, inside C, where gevent cannot switch: on gevent's worker each query holds "
            "every request of its worker until it returns",
        )


def _served_worker_class(app: Flask, context: Context) -> str:
    """The worker class `up` and `serve` run the app on: the spec's, or for auto, gevent's when Flask-SocketIO runs
    on gevent (servers/websockets.py)."""
    from ..servers.probe import socketio_mode, socketio_path
    from ..sizing import worker_class

    spec = context.effective_spec
    if spec.server.worker_class != "auto" or not socketio_path(app):
        return worker_class(spec)
    return "gevent" if (socketio_mode_served(context) or socketio_mode(app)) == "gevent" else worker_class(spec)


@check(
    "FP-C019",
    WARNING,
    "a variable set in .env or .flaskenv, which `flask run` loads and production servers do not (Gunicorn, uWSGI, "
    "`flaskprod up` and `serve`, every built target), is not set where check runs and no deployment file passes "
    "it: the deployed app runs without it (app.config.from_prefixed_env() finds no FLASK_ITEMS_PER_PAGE, "
    "os.environ.get() its default)",
    hint="set it in the deployment's environment: environment: in Compose, ENV in the Dockerfile, env in "
    "Kubernetes, Environment= in a systemd unit, or export it where `flaskprod up` or `serve` runs; pass a "
    "secret in from outside the image (${NAME} from the host, a Compose or Kubernetes Secret), never copy it in",
)
def dotenv_not_deployed(context: Context) -> Iterator[Found]:
    if context.environ.get("FLASK_SKIP_DOTENV", "").lower() not in ("", "0", "false", "no"):
        return  # flask run loads no dotenv file either
    loaded = dotenv_files.loaders(context)
    seen: set[str] = set()
    passed: set[str] | None = None  # read once a dotenv file sets a variable
    for item in dotenv_files.flask_dotenv_files(context):
        loaded_at = loaded.get(item.path.name)
        if loaded_at is not None and not dotenv_files.left_out_of_builds(item.path.name):
            continue  # the app's own code loads it, and every target ships it (.flaskenv)
        for binding in bindings(item.text):
            name = binding.name
            if not binding.value or name in seen or _development_variable(name):
                continue
            seen.add(name)  # python-dotenv keeps the first file's value: .env's over .flaskenv's
            # The code's own load put the file's value in the environment check runs in: another value is the shell's.
            set_here = name in context.environ and (loaded_at is None or context.environ[name] != binding.value)
            if set_here or _code_default(name, context) == binding.value:
                continue  # the deployed app runs with the same value: the code falls back to it
            passed = dotenv_files.passed_names(context) if passed is None else passed
            if _given_as_flask_variable(name, context, passed):
                continue
            if name not in passed:
                text = None if loaded_at is None else _LOADED_BUT_LEFT_OUT.format(
                    name=name, file=item.rel, loaded_at=loaded_at
                )
                yield Found(
                    obj=item.at(binding.line),
                    text=text
                    or f"{name} is set in {item.rel}, which `flask run` loads and production servers do not "
                    "(Gunicorn, uWSGI, `flaskprod up` and `serve`, every built target): it is not set where check "
                    "runs and no deployment file passes it, so the deployed app runs without it",
                    hint=_DOTENV_HINT.format(name=name),
                )


_LOADED_BUT_LEFT_OUT = (
    "{name} is set in {file}, which the app's own code loads ({loaded_at}) and `flaskprod up` links into its "
    "release, but every built target leaves out of what it ships (the images' .dockerignore, the VM's copy), and no "
    "deployment file passes it: the built targets run the app without it"
)


def _code_default(name: str, context: Context) -> str | None:
    """The default the project's code names for variable name at every read of it (os.environ.get(name, "...")); None
    when a read names none, or reads differ."""
    defaults = {default for variable, default in context.once(code_defaults) if variable == name}
    return defaults.pop() if len(defaults) == 1 else None


def _given_as_flask_variable(name: str, context: Context, passed: set[str]) -> bool:
    """Whether the app gets config name another way: Production(app) loads FLASK_<name> into it (app.env_config),
    and that is set where check runs or passed by a deployment file (FLASK_SECRET_KEY, which every built target
    passes, for the SECRET_KEY an app reads from .env)."""
    installed = context.installed
    flask_name = f"FLASK_{name}"
    if name.startswith("FLASK_") or installed is None or not installed.spec.app.env_config:
        return False
    return flask_name in context.environ or flask_name in passed


# What `flask run` itself reads, and development alone sets: the app's name (flaskprod reads FLASK_APP from the
# dotenv files too), debug mode (off is production's default; DEBUG for a settings class that reads it, as
# pydantic-settings' debug: bool does), the development server's options.
_DEVELOPMENT_VARIABLES = frozenset(
    {"FLASK_APP", "FLASK_DEBUG", "DEBUG", "FLASK_ENV", "FLASK_SKIP_DOTENV", "WERKZEUG_DEBUG_PIN"}
)
_DOTENV_HINT = (
    "set {name} in the deployment's environment: environment: in Compose, ENV in the Dockerfile, env in Kubernetes, "
    "Environment= in a systemd unit, or export it where `flaskprod up` or `serve` runs; pass a secret in from "
    "outside the image (${{{name}}} from the host, a Compose or Kubernetes Secret), never copy it in"
)


def _development_variable(name: str) -> bool:
    return name in _DEVELOPMENT_VARIABLES or name.startswith("FLASK_RUN_")
