"""SQLAlchemy engine options from the spec, and pools disposed after fork."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import flask_sqlalchemy
import psycopg
import pytest
import sqlalchemy
import sqlalchemy.pool
from flask import Flask

import flaskprod
from flaskprod import Production
from flaskprod.errors import SpecError
from flaskprod.runtime import interrupted_queries
from flaskprod.runtime.db import (
    STATEMENT_TIMEOUT_KEYWORD,
    STATEMENT_TIMEOUT_PLUGIN,
    dispose_pools_after_fork,
    engine_options,
)
from flaskprod.runtime.deadline import RequestTimeout, call_with_deadline
from flaskprod.sizing import db_pool
from flaskprod.spec import Spec, load_spec
from tests.conftest import Postgres, StartServer
from tests.support import wait_for


def test_postgresql_options_size_the_pool_from_the_workers() -> None:
    spec = Spec().replace(**{"server.workers": 4, "server.threads": 2, "database.connection_budget": 40})
    options = engine_options(spec, "postgresql+psycopg2://u@db/app")
    pool = db_pool(spec, 4, 2)
    assert options == {
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        "pool_size": pool.size,
        "max_overflow": pool.overflow,
        "pool_timeout": 10,
        "connect_args": {"connect_timeout": 5},
        # The statement timeout, auto = server.timeout (30 s), set on each new connection by this plugin.
        "plugins": [STATEMENT_TIMEOUT_PLUGIN],
        STATEMENT_TIMEOUT_KEYWORD: 30000,
    }
    assert 4 * (options["pool_size"] + options["max_overflow"]) <= 40


@pytest.mark.parametrize(
    ("settings", "url", "milliseconds"),
    [
        ({"server.timeout": 12}, "postgresql+psycopg://u@db/app", 12000),
        ({"database.statement_timeout": 0.25}, "postgresql+pg8000://u@db/app", 250),
        ({"database.statement_timeout": 0.0001}, "postgresql://u@db/app", 1),  # 0 would be none to PostgreSQL
        ({"database.statement_timeout": 0}, "postgresql+psycopg2://u@db/app", None),
        ({"database.statement_timeout": None}, "postgresql+psycopg2://u@db/app", None),
        ({}, "sqlite:///app.db", None),
        # MariaDB's max_statement_time; nothing on MySQL, which the dialect learns on connecting (see below).
        ({}, "mysql+pymysql://u@db/app", 30000),
        ({"server.timeout": 5}, "mariadb+pymysql://u@db/app", 5000),
    ],
)
def test_statement_timeout_is_the_request_deadline_on_postgresql_and_mariadb(
    settings: dict[str, object], url: str, milliseconds: int | None
) -> None:
    options = engine_options(Spec().replace(**{"server.workers": 2, **settings}), url)
    assert options.get(STATEMENT_TIMEOUT_KEYWORD) == milliseconds
    assert ("plugins" in options) is (milliseconds is not None)


def test_sqlite_gets_no_pool_sizing() -> None:
    options = engine_options(Spec(), "sqlite:///app.db")
    assert options == {"pool_pre_ping": True, "pool_recycle": 1800}


def test_driver_without_connect_timeout_gets_none() -> None:
    options = engine_options(Spec().replace(**{"server.workers": 2}), "postgresql+pg8000://u@db/app")
    assert "connect_args" not in options
    assert options["pool_size"] >= 1


def make_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), **config)
    Production(app, spec=Spec().replace(**{"server.workers": 3}))
    return app


def test_options_reach_the_engine() -> None:
    app = make_app(SQLALCHEMY_DATABASE_URI="postgresql+psycopg2://u:p@127.0.0.1:1/app")
    db = flask_sqlalchemy.SQLAlchemy(app)
    with app.app_context():
        engine = db.engine
        assert engine.pool.size() == app.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"]
        assert engine.pool._pre_ping is True
        assert engine.pool._recycle == 1800


def test_options_of_the_app_are_kept() -> None:
    app = make_app(SQLALCHEMY_DATABASE_URI="sqlite://", SQLALCHEMY_ENGINE_OPTIONS={"echo": False})
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {"echo": False}


def test_engine_options_switch() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), SQLALCHEMY_DATABASE_URI="sqlite://")
    Production(app, spec=Spec().replace(**{"database.engine_options": False}))
    assert "SQLALCHEMY_ENGINE_OPTIONS" not in app.config


def test_pools_are_replaced_after_fork(tmp_path: object) -> None:
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/app.db")
    db = flask_sqlalchemy.SQLAlchemy(app)
    with app.app_context():
        engine = db.engine
        with engine.connect():
            pass
        inherited = engine.pool
        # What os.register_at_fork runs in each new worker.
        dispose_pools_after_fork()
        assert engine.pool is not inherited
        assert engine.pool.checkedin() == 0
        inherited.dispose()  # this test process is "the parent": close its own connections


# The app's own engine, not Flask-SQLAlchemy's, connected as the module loads: under uWSGI the master loads
# it and forks the workers, each inheriting the pooled connection's socket.
IMPORT_TIME_ENGINE_APP = """
import os

import sqlalchemy as sa
from flask import Flask, jsonify

from flaskprod import Production

engine = sa.create_engine(os.environ["DATABASE_URL"])
with engine.connect() as conn:
    LOADED_ON = conn.scalar(sa.text("SELECT pg_backend_pid()"))

app = Flask(__name__)
Production(app)


@app.get("/backend")
def backend():
    with engine.connect() as conn:
        return jsonify(worker=os.getpid(), backend=conn.scalar(sa.text("SELECT pg_backend_pid()")), loaded_on=LOADED_ON)
"""


@pytest.mark.integration
def test_each_worker_opens_its_own_connections_of_an_engine_made_at_import(
    serve_app: StartServer, postgres: Postgres
) -> None:
    server = serve_app(
        IMPORT_TIME_ENGINE_APP, workers=2, env={"DATABASE_URL": postgres.url}, args=("--server", "uwsgi")
    )
    seen: dict[int, int] = {}
    loaded_on = None
    # Sequential requests reach whichever worker accepts first: bounded, until both have answered.
    for _ in range(200):
        answer = server.get("/backend", timeout=10).json()
        loaded_on = answer["loaded_on"]
        seen.setdefault(answer["worker"], answer["backend"])
        if len(seen) == 2:
            break
    assert len(seen) == 2, server.output()
    # A worker on the master's connection shares its socket with the other worker: their queries interleave.
    assert loaded_on not in seen.values()
    assert len(set(seen.values())) == 2


HOLDING_APP = """
from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy
import sqlalchemy as sa

from flaskprod import Production

app = Flask(__name__)
Production(app)
db = SQLAlchemy(app)


@app.get("/hold")
def hold():
    db.session.execute(sa.text("SELECT pg_sleep(:s)"), {"s": float(request.args["s"])})
    return "held"
"""


# Which server process the request's connection talks to: the same one while the pool keeps that connection.
BACKEND_APP = HOLDING_APP + """

@app.get("/backend")
def backend():
    return str(db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar())
"""


def sleeping(url: str) -> bool:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'"
        return bool(conn.scalar(sqlalchemy.text(query)))


@pytest.mark.integration
def test_readiness_stays_200_while_requests_use_every_pooled_connection(
    serve_app: StartServer, postgres: Postgres
) -> None:
    # A pool of one connection, as a small budget shared by many processes leaves each.
    pool = {"FLASKPROD_DATABASE__POOL_SIZE": "1", "FLASKPROD_DATABASE__MAX_OVERFLOW": "0"}
    server = serve_app(HOLDING_APP, env={"DATABASE_URL": postgres.url, **pool}, args=("--threads", "4"))
    assert server.get("/readyz", timeout=10).status_code == 200
    with ThreadPoolExecutor(1) as pool_user:
        held = pool_user.submit(server.get, "/hold?s=4", timeout=15)
        # The request holds the pool's only connection for 4 s: readiness asks meanwhile.
        wait_for(lambda: sleeping(postgres.url), timeout=5, what="the request's query on the database")
        started = time.monotonic()
        ready = server.get("/readyz", timeout=10)
        elapsed = time.monotonic() - started
        assert not held.done()
        assert held.result().text == "held"
    assert ready.status_code == 200, ready.text
    assert elapsed < Spec().monitoring.check_timeout


def test_pool_options_size_an_apps_own_engine_as_production_sizes_flask_sqlalchemys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "postgresql+psycopg2://shop@127.0.0.1:5432/shop"
    spec = Spec().replace(**{"server.workers": 3, "server.threads": 4, "database.connection_budget": 40})
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), SQLALCHEMY_DATABASE_URI=url)
    Production(app, spec=spec)
    assert flaskprod.pool_options(url, spec) == app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    # Without a spec, the one the workers are given: flaskprod.toml and FLASKPROD_* as `serve` exports them.
    monkeypatch.setenv("FLASKPROD_DATABASE__POOL_SIZE", "3")
    monkeypatch.setenv("FLASKPROD_DATABASE__MAX_OVERFLOW", "1")
    options = flaskprod.pool_options(url)
    assert (options["pool_size"], options["max_overflow"], options["pool_pre_ping"]) == (3, 1, True)
    engine = sqlalchemy.create_engine(url, **options)  # what SQLAlchemy takes as it is
    assert (engine.pool.size(), engine.pool._max_overflow) == (3, 1)  # type: ignore[attr-defined]
    engine.dispose()


def psycopg3(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql+psycopg://", 1)


def pg8000(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql+pg8000://", 1)


def check_statement_timeout(app: Flask, engine: sqlalchemy.Engine) -> None:
    """A statement past the spec's 0.5 s is cancelled after about that in a request (OperationalError, or
    pg8000's ProgrammingError); others run; a reused connection keeps it; outside a request (a migration, a CLI
    command, a job's thread) a connection has none."""
    with engine.connect() as conn:
        assert conn.scalar(sqlalchemy.text("SHOW statement_timeout")) == "0"
    engine.dispose()
    with app.test_request_context(), engine.connect() as conn:
        backend = conn.scalar(sqlalchemy.text("SELECT pg_backend_pid()"))
        assert conn.scalar(sqlalchemy.text("SHOW statement_timeout")) == "500ms"
        assert conn.scalar(sqlalchemy.text("SELECT count(*) FROM pg_sleep(0.1)")) == 1
        started = time.monotonic()
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="canceling statement due to statement timeout"):
            conn.execute(sqlalchemy.text("SELECT pg_sleep(5)"))
        assert 0.4 < time.monotonic() - started < 3
    # Returned to the pool (rolled back there) and checked out again: the same session, still with its timeout.
    with app.test_request_context(), engine.connect() as conn:
        assert conn.scalar(sqlalchemy.text("SELECT pg_backend_pid()")) == backend
        assert conn.scalar(sqlalchemy.text("SHOW statement_timeout")) == "500ms"
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="statement timeout"):
            conn.execute(sqlalchemy.text("SELECT pg_sleep(5)"))
    # The same session checked out by a job's thread, outside any request: none, then in a request again.
    with engine.connect() as conn:
        assert conn.scalar(sqlalchemy.text("SELECT pg_backend_pid()")) == backend
        assert conn.scalar(sqlalchemy.text("SHOW statement_timeout")) == "0"
    with app.test_request_context(), engine.connect() as conn:
        assert conn.scalar(sqlalchemy.text("SELECT pg_backend_pid()")) == backend
        assert conn.scalar(sqlalchemy.text("SHOW statement_timeout")) == "500ms"
    # A worker's new pool after fork opens new connections, which get it too.
    inherited = engine.pool
    engine.dispose(close=False)
    try:
        with app.test_request_context(), engine.connect() as conn:
            assert conn.scalar(sqlalchemy.text("SELECT pg_backend_pid()")) != backend
            assert conn.scalar(sqlalchemy.text("SHOW statement_timeout")) == "500ms"
    finally:
        inherited.dispose()  # this process is "the parent": close its own connections


SHORT_STATEMENTS = Spec().replace(**{"server.workers": 2, "database.statement_timeout": 0.5})


def test_the_plugin_leaves_an_engine_of_another_database_alone() -> None:
    # Flask-SQLAlchemy gives SQLALCHEMY_ENGINE_OPTIONS, made for the default URL, to every bind: a SQLite one too.
    options = engine_options(SHORT_STATEMENTS, "postgresql+psycopg2://u@db/app")
    engine = sqlalchemy.create_engine(
        "sqlite://", plugins=options["plugins"], **{STATEMENT_TIMEOUT_KEYWORD: options[STATEMENT_TIMEOUT_KEYWORD]}
    )
    try:
        with Flask(__name__).test_request_context(), engine.connect() as conn:
            assert conn.scalar(sqlalchemy.text("SELECT 1")) == 1  # no SET statement_timeout, which SQLite refuses
    finally:
        engine.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("driver", [str, psycopg3, pg8000], ids=["psycopg2", "psycopg", "pg8000"])
def test_flask_sqlalchemys_engine_cancels_a_statement_past_the_timeout(postgres: Postgres, driver: object) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), SQLALCHEMY_DATABASE_URI=driver(postgres.url))  # type: ignore[operator]
    Production(app, spec=SHORT_STATEMENTS)
    db = flask_sqlalchemy.SQLAlchemy(app)
    with app.app_context():
        try:
            check_statement_timeout(app, db.engine)
        finally:
            db.engine.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("driver", [str, psycopg3, pg8000], ids=["psycopg2", "psycopg", "pg8000"])
def test_an_engine_made_with_pool_options_cancels_a_statement_past_the_timeout(
    postgres: Postgres, driver: object
) -> None:
    url = driver(postgres.url)  # type: ignore[operator]
    engine = sqlalchemy.create_engine(url, **flaskprod.pool_options(url, SHORT_STATEMENTS))
    try:
        check_statement_timeout(Flask(__name__), engine)
    finally:
        engine.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("driver", [str, psycopg3, pg8000], ids=["psycopg2", "psycopg", "pg8000"])
def test_a_query_stops_with_the_request_that_ran_past_its_deadline(
    serve_app: StartServer, postgres: Postgres, driver: Callable[[str], str]
) -> None:
    # The statement timeout follows server.timeout (auto): the query ends with its request, not 10 s later.
    server = serve_app(HOLDING_APP, env={"DATABASE_URL": driver(postgres.url)}, args=("--timeout", "1"))
    started = time.monotonic()
    answer = server.get("/hold?s=10", timeout=15)
    assert answer.status_code == 504, answer.text
    assert time.monotonic() - started < 4
    assert not sleeping(postgres.url), "the request is over, its query still runs"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("driver", "cancel_lost"), [(psycopg3, False), (psycopg3, True), (pg8000, False)],
    ids=["psycopg cancelled", "psycopg cancel lost", "pg8000"],
)  # fmt: skip
def test_a_connection_the_deadline_interrupts_is_kept_once_drained_else_dropped(
    postgres: Postgres, monkeypatch: pytest.MonkeyPatch, driver: Callable[[str], str], cancel_lost: bool
) -> None:
    """The deadline's SIGALRM (this is the main thread) lands in the driver's wait. psycopg's: the server's answer to
    the cancel is read and the pool keeps the connection. A cancel that never reaches the server (a proxy between
    that drops it) leaves no answer to read: the pool drops the connection rather than hand the next checkout one
    still waiting. pg8000's, stopped partway through a message: its cancel request (pg8000 has no call for one) ends
    the statement, and the pool drops the connection; before, the pool's rollback read on for the statement's 60 s.
    """
    if cancel_lost:
        monkeypatch.setattr(psycopg.Connection, "cancel_safe", lambda self, timeout=None: None)
        monkeypatch.setattr(interrupted_queries, "CANCEL_WAIT", 0.3)
    kept = driver is psycopg3 and not cancel_lost
    engine = sqlalchemy.create_engine(driver(postgres.url), pool_size=1, max_overflow=0)
    interrupted_queries.watch_engines_for_interrupted_queries()
    try:
        with engine.connect() as conn:
            backend = conn.scalar(sqlalchemy.text("SELECT pg_backend_pid()"))
            with pytest.raises(RequestTimeout):
                call_with_deadline(0.5, 0.0, conn.execute, sqlalchemy.text("SELECT pg_sleep(60)"))
            started = time.monotonic()
        assert time.monotonic() - started < 2  # returned to the pool at once
        with engine.connect() as conn:
            again = conn.scalar(sqlalchemy.text("SELECT pg_backend_pid()"))
            assert (again == backend) is kept
            if cancel_lost:  # PostgreSQL notices a closed client only when it next writes to it
                conn.execute(sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        wait_for(lambda: not sleeping(postgres.url), timeout=3, what="the statement to end")
    finally:
        engine.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("server_kind", ["gunicorn", "uwsgi"])
@pytest.mark.parametrize(("driver", "kept"), [(psycopg3, True), (pg8000, False)], ids=["psycopg", "pg8000"])
def test_a_query_the_deadline_interrupts_in_a_python_driver_is_stopped_and_answered_504(
    serve_app: StartServer, postgres: Postgres, server_kind: str, driver: Callable[[str], str], kept: bool
) -> None:
    """On a sync worker the deadline's SIGALRM lands in the wait of a driver that reads in Python. psycopg cancels a
    query only for KeyboardInterrupt: the connection was left waiting, the pool's rollback failed ("another command
    is already in progress") and the client got 500 while the query ran on. pg8000 was stopped partway through a
    message. PostgreSQL's own timeout is off here: the statement ends by the cancel alone. psycopg's connection is
    kept, once the server's answer to the cancel is read; pg8000's is dropped."""
    args = ("--server", server_kind, "--threads", "1", "--timeout", "1", "--set", "database.statement_timeout=0")
    server = serve_app(BACKEND_APP, env={"DATABASE_URL": driver(postgres.url)}, args=args)
    backend = server.get("/backend", timeout=15).text
    for _ in range(2):
        answer = server.get("/hold?s=60", timeout=15)
        assert answer.status_code == 504, answer.text
        wait_for(lambda: not sleeping(postgres.url), timeout=10, what="the cancelled statement to end")
        assert (server.get("/backend", timeout=15).text == backend) is kept
    assert "another command is already in progress" not in server.stderr() + server.stdout()


# psycopg without SQLAlchemy: a connection per request, as an app that needs no pool opens one.
BARE_PSYCOPG_APP = """
import os

import psycopg
from flask import Flask, request

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/hold")
def hold():
    with psycopg.connect(os.environ["PG_DSN"]) as conn:
        conn.execute("SELECT pg_sleep(%s)", (float(request.args["s"]),))
    return "held"
"""


@pytest.mark.integration
@pytest.mark.parametrize(
    "args",
    [
        ("--threads", "1"),
        ("--server", "uwsgi", "--threads", "1"),
        ("--set", "server.worker_class=gevent"),
        ("--threads", "4"),
        ("--server", "uwsgi", "--threads", "4"),
    ],
    ids=["gunicorn-sync", "uwsgi-sync", "gevent", "gunicorn-threads", "uwsgi-threads"],
)
def test_a_bare_psycopg_query_the_deadline_interrupts_is_cancelled_and_answered_504(
    serve_app: StartServer, postgres: Postgres, args: tuple[str, ...]
) -> None:
    """psycopg cancels the query its wait was in when the deadline lands there, as for Ctrl-C, with no SQLAlchemy
    to tell it. Before: the client got its 504, but the statement ran on for its 60 s, the connection closed under
    it (there is no statement timeout without SQLAlchemy). On threads the deadline lands between Python
    instructions, and psycopg waited in C: the 504 came when the statement ended (past the client's 15 s here)."""
    dsn = sqlalchemy.make_url(postgres.url).set(drivername="postgresql").render_as_string(hide_password=False)
    server = serve_app(BARE_PSYCOPG_APP, env={"PG_DSN": dsn}, args=(*args, "--timeout", "1"))
    for _ in range(2):
        started = time.monotonic()
        answer = server.get("/hold?s=60", timeout=15)
        assert answer.status_code == 504, answer.text
        assert time.monotonic() - started < 3
        wait_for(lambda: not sleeping(postgres.url), timeout=3, what="the cancelled statement to end")
    assert server.get("/hold?s=0", timeout=15).text == "held"
    assert "another command is already in progress" not in server.stderr() + server.stdout()


@pytest.mark.parametrize(
    ("text", "seconds"), [("auto", "auto"), ("1.5", 1.5), ("30", 30.0), ("0", 0.0), ("none", None), ("", None)]
)
def test_statement_timeout_is_read_from_the_environment(tmp_path: Path, text: str, seconds: object) -> None:
    spec = load_spec(tmp_path, environ={"FLASKPROD_DATABASE__STATEMENT_TIMEOUT": text})
    assert spec.database.statement_timeout == seconds


@pytest.mark.parametrize("text", ["-1", "inf", "soon"])
def test_a_statement_timeout_that_is_no_time_is_refused(tmp_path: Path, text: str) -> None:
    refused = rf"^env FLASKPROD_DATABASE__STATEMENT_TIMEOUT: invalid value '{text}' for database\.statement_timeout"
    with pytest.raises(SpecError, match=refused):
        load_spec(tmp_path, environ={"FLASKPROD_DATABASE__STATEMENT_TIMEOUT": text})
