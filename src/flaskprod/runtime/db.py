"""SQLAlchemy engine options from the spec, readiness pings, and pools disposed after fork."""

from __future__ import annotations

import functools
import gc
import importlib.util
import os
import sys
import threading
import weakref
from typing import Any

from flask import Flask, has_request_context

from ..sizing import db_pool, derive, timeouts
from ..spec import Spec
from .deadline import on_greenlets
from .health import Check, in_check
from .interrupted_queries import watch_engines_for_interrupted_queries
from .migrations import CHECK_NAME as MIGRATIONS_CHECK
from .migrations import TABLES_CHECK_NAME, schema_check, tables_check

# Drivers that take a connect_timeout keyword (libpq and the MySQL clients); others use other names.
_CONNECT_TIMEOUT_DRIVERS = {
    "postgresql": {None, "psycopg2", "psycopg"},
    "mysql": {None, "pymysql", "mysqldb"},
}


def _split_url(url: str) -> tuple[str, str | None]:
    scheme = url.split(":", 1)[0].lower()
    backend, _, driver = scheme.partition("+")
    return backend, driver or None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def with_installed_driver(url: str) -> str:
    """url naming the PostgreSQL driver installed when it says postgresql:// with none, and one is installed.

    SQLAlchemy reads a bare postgresql:// as its default driver's, psycopg2 before 2.1 and psycopg (3) since:
    the URL flaskprod's deployments give the app is one, and an app that installs the other driver alone
    would fail on its first query.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "postgresql":
        return url
    installed = [driver for driver in ("psycopg2", "psycopg") if _importable(driver)]
    return f"postgresql+{installed[0]}://{rest}" if len(installed) == 1 else url


def engine_options(spec: Spec, url: str | None, *, workers: int | None = None) -> dict[str, Any]:
    """create_engine options: pre-ping, recycle, and a pool sized so all workers fit the connection budget."""
    db = spec.database
    options: dict[str, Any] = {"pool_pre_ping": db.pre_ping, "pool_recycle": db.pool_recycle}
    if url is None:
        # Unknown backend: only options every pool class accepts.
        return options
    backend, driver = _split_url(url)
    if backend == "sqlite":
        # SQLite uses a singleton or static pool in memory, which rejects sizing options.
        return options
    pool = derive(spec).pool if workers is None else db_pool(spec, workers, spec.server.threads)
    options.update(pool_size=pool.size, max_overflow=pool.overflow, pool_timeout=db.pool_timeout)
    if driver in _CONNECT_TIMEOUT_DRIVERS.get(backend, ()):
        # Without it a stopped or unreachable server hangs the connect, and the readiness probe with it.
        options["connect_args"] = {"connect_timeout": db.connect_timeout}
    milliseconds = statement_timeout_ms(spec)
    if backend in LIMITED_BACKENDS and milliseconds is not None and _statement_timeout_plugin_registered():
        options.update({"plugins": [STATEMENT_TIMEOUT_PLUGIN], STATEMENT_TIMEOUT_KEYWORD: milliseconds})
    return options


# Under gevent the request's deadline cancels its statement itself (servers/greenlets.py) and answers 504; auto's
# timeout then comes this much after it, a backstop for a worker killed mid-query. At the same moment, the server's
# error raced the deadline, and won 1 time in 8 by hand: a 500.
AFTER_A_GREENLETS_DEADLINE = 1.0


def statement_timeout_ms(spec: Spec) -> int | None:
    """database.statement_timeout in milliseconds, None when off; auto = the request deadline, server.timeout."""
    setting = spec.database.statement_timeout
    seconds = timeouts(spec).request if setting == "auto" else setting
    if setting == "auto" and seconds and on_greenlets():
        seconds += AFTER_A_GREENLETS_DEADLINE
    if not seconds:
        return None
    return max(1, round(seconds * 1000))  # PostgreSQL reads 0 as none: a sub-millisecond timeout is 1 ms


# The backends whose statements the timeout limits: PostgreSQL's statement_timeout and MariaDB's max_statement_time
# (SQLAlchemy names MariaDB's dialect mysql, or mariadb for a mariadb:// URL). MySQL's max_execution_time stops
# SELECTs alone: nothing is set there (the dialect tells them apart once connected).
LIMITED_BACKENDS = frozenset({"postgresql", "mysql", "mariadb"})

# An SQLAlchemy engine plugin (create_engine's plugins=[...]) that sets the statement timeout on each new
# connection, and the create_engine keyword that hands it the milliseconds. A plugin keeps the options plain
# data that create_engine and Flask-SQLAlchemy take as they are: they cannot carry an event listener.
STATEMENT_TIMEOUT_PLUGIN = "flaskprod_statement_timeout"
STATEMENT_TIMEOUT_KEYWORD = "flaskprod_statement_timeout_ms"


@functools.cache
def _statement_timeout_plugin_registered() -> bool:
    """Register the plugin with SQLAlchemy; False without SQLAlchemy, where no engine takes the options."""
    if not _importable("sqlalchemy"):
        return False
    from sqlalchemy.dialects import plugins

    plugins.register(STATEMENT_TIMEOUT_PLUGIN, __name__, StatementTimeout.__name__)
    return True


class StatementTimeout:
    """The engine plugin: SET statement_timeout on a PostgreSQL DBAPI connection (psycopg2, psycopg 3, pg8000,
    asyncpg), or max_statement_time on a MariaDB one, when a request checks it out, back to the default when
    anything else does.

    In requests only: the timeout is the request deadline's, and a migration, a CLI command or a job run on the
    app's engine has none. A session setting rather than libpq's options startup parameter, which PgBouncer
    refuses. Committed, so neither the driver's open transaction nor the pool's rollback on return undoes it; a
    new connection (after recycle, a failed pre-ping or the dispose after fork) has a fresh record.info.
    """

    def __init__(self, url: Any, kwargs: dict[str, Any]) -> None:
        # Popped: create_engine refuses a keyword no dialect or plugin took.
        self.milliseconds = kwargs.pop(STATEMENT_TIMEOUT_KEYWORD, None)

    def update_url(self, url: Any) -> Any:
        return url

    def handle_dialect_kwargs(self, dialect_cls: Any, dialect_args: dict[str, Any]) -> None:
        pass

    def handle_pool_kwargs(self, pool_cls: Any, pool_args: dict[str, Any]) -> None:
        pass

    def engine_created(self, engine: Any) -> None:
        # Flask-SQLAlchemy hands SQLALCHEMY_ENGINE_OPTIONS to every bind: a SQLite one beside PostgreSQL too.
        if self.milliseconds is None or engine.dialect.name not in LIMITED_BACKENDS:
            return
        from sqlalchemy import event

        listener = functools.partial(limit_in_requests, milliseconds=int(self.milliseconds), dialect=engine.dialect)
        event.listen(engine, "checkout", listener)


def session_settings(dialect: Any, milliseconds: int) -> tuple[str, str] | None:
    """The statements that set the timeout for a session and put the server's own back; None where none is set."""
    if dialect.name == "postgresql":
        return f"SET statement_timeout = {int(milliseconds)}", "RESET statement_timeout"  # the role's or the server's
    if getattr(dialect, "is_mariadb", False):  # known from the server's version once connected
        seconds = int(milliseconds) / 1000
        return f"SET SESSION max_statement_time = {seconds:.3f}", "SET SESSION max_statement_time = DEFAULT"
    return None


def limit_in_requests(
    dbapi_connection: Any, connection_record: Any, proxy: Any, *, milliseconds: int, dialect: Any
) -> None:
    """The pool's checkout listener: the timeout on a connection a request (or a readiness check) checks out, none
    on one checked out elsewhere (a job's thread in the same process); a statement only when a connection changes
    sides."""
    statements = session_settings(dialect, milliseconds)
    if statements is None:
        return
    limit, unlimit = statements
    limited = STATEMENT_TIMEOUT_KEYWORD in connection_record.info
    if has_request_context() or in_check():
        if not limited:
            run_session_setting(dbapi_connection, limit)
            connection_record.info[STATEMENT_TIMEOUT_KEYWORD] = milliseconds
    elif limited:
        run_session_setting(dbapi_connection, unlimit)
        del connection_record.info[STATEMENT_TIMEOUT_KEYWORD]


def run_session_setting(dbapi_connection: Any, statement: str) -> None:
    """Run it for the session; a server that refuses it fails the checkout, saying which setting did it."""
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()
        dbapi_connection.commit()
    except Exception as exc:
        exc.add_note(
            "flaskprod sets a statement timeout on connections requests use (database.statement_timeout): "
            "set it to 0 for a server that refuses it"
        )
        raise


def pool_options(url: str, spec: Spec | None = None) -> dict[str, Any]:
    """create_engine options for an engine the app makes itself: `create_engine(url, **pool_options(url))`.

    The pool sized as Production(app) sizes Flask-SQLAlchemy's, from the workers and threads this process
    serves with and database.connection_budget (the spec read from flaskprod.toml and FLASKPROD_* as the
    workers are given it), with pre-ping, recycle, a connect timeout and, on PostgreSQL and MariaDB, the statement
    timeout (database.statement_timeout) set on the connections requests use.
    """
    from ..spec import load_spec

    return engine_options(spec or load_spec(), url)


def configure_engines(app: Flask, spec: Spec) -> None:
    """Set SQLALCHEMY_ENGINE_OPTIONS unless the app set its own, and dispose inherited pools after fork."""
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(spec, app.config.get("SQLALCHEMY_DATABASE_URI")))
    _register_for_fork(app)


def database_checks(app: Flask, *, migrations: bool = True) -> dict[str, Check]:
    """A SELECT 1 per Flask-SQLAlchemy engine of app, and with migrations the schema check of its databases:
    their Alembic revision when the app uses Flask-Migrate, else its models' tables (database.migration_check);
    must be called inside its app context."""
    ext = app.extensions.get("sqlalchemy")
    if ext is None:
        return {}
    from sqlalchemy import text

    checks: dict[str, Check] = {}
    for key, engine in ext.engines.items():
        name = "database" if key is None else f"database:{key}"

        def ping(engine: Any = engine) -> None:
            if _pool_busy(engine.pool):
                return
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        checks[name] = ping
    if migrations:
        engines = dict(ext.engines)
        if (schema := schema_check(app, engines, _pool_busy)) is not None:
            checks[MIGRATIONS_CHECK] = schema
        elif (tables := tables_check(app, engines, _pool_busy)) is not None:
            checks[TABLES_CHECK_NAME] = tables
    return checks


def _pool_busy(pool: Any) -> bool:
    """True when every connection the pool may open is checked out by a request.

    The ping would wait for one (up to database.pool_timeout) past the readiness check's timeout and fail a
    process whose database is answering its requests: under load every replica would leave the load
    balancer at once. Connections in use are the database answering; a pool with room pings it.
    """
    from sqlalchemy.pool import QueuePool

    if not isinstance(pool, QueuePool) or pool._max_overflow < 0:
        return False  # a pool without a bound (unlimited overflow, NullPool, SQLite's) never makes it wait
    return bool(pool.checkedout() >= pool.size() + pool._max_overflow)


_apps: weakref.WeakSet[Flask] = weakref.WeakSet()
# Every SQLAlchemy engine that has opened a connection in this process, Flask-SQLAlchemy's or not.
_engines: weakref.WeakSet[Any] = weakref.WeakSet()
_fork_hook_lock = threading.Lock()
_fork_hook_registered = False
_watching_engines = False


def _register_for_fork(app: Flask) -> None:
    global _fork_hook_registered, _watching_engines
    _apps.add(app)
    with _fork_hook_lock:
        if not hasattr(os, "register_at_fork"):
            return
        if not _watching_engines:
            _watching_engines = _watch_engines()
        if not _fork_hook_registered:
            os.register_at_fork(after_in_child=dispose_pools_after_fork)
            _fork_hook_registered = True


def _remember_engine(conn: Any) -> None:
    _engines.add(conn.engine)


def _watch_engines() -> bool:
    """Track the app's own engines too (create_engine at import, not Flask-SQLAlchemy's): their pooled
    connections would otherwise reach every worker as one socket shared by all, and corrupt each other.

    Only when the app has imported SQLAlchemy already (one that has not pays nothing): the engines it made
    so far are found among the live objects, and any that connects later tells an engine_connect listener.
    Every engine also cancels a psycopg query the request's deadline interrupted (interrupted_queries.py).
    """
    if "sqlalchemy" not in sys.modules:
        return False
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    _engines.update(obj for obj in gc.get_objects() if isinstance(obj, Engine))
    event.listen(Engine, "engine_connect", _remember_engine)
    watch_engines_for_interrupted_queries()
    return True


def _engines_of(app: Flask) -> list[Any]:
    ext = app.extensions.get("sqlalchemy")
    if ext is None:
        return []
    # Read the engines without pushing an app context: teardown handlers must not run in a fork hook.
    per_app = getattr(ext, "_app_engines", None)
    if per_app is not None:
        return list(per_app.get(app, {}).values())
    with app.app_context():
        return list(ext.engines.values())


def dispose_pools_after_fork() -> None:
    """Forget pooled connections inherited from the parent, without closing the parent's sockets.

    Runs in each forked worker (os.register_at_fork). uWSGI forks without running Python's fork
    hooks: call this from its postfork hook.
    """
    engines = {id(engine): engine for engine in list(_engines)}
    for app in list(_apps):
        engines.update((id(engine), engine) for engine in _engines_of(app))
    for engine in engines.values():
        engine.dispose(close=False)
