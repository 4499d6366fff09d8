"""Production(app) on MySQL (a real MariaDB) through PyMySQL: a query past the request's deadline."""

from __future__ import annotations

import time

import pytest
import sqlalchemy
from flask import Flask

import flaskprod
from flaskprod.runtime import interrupted_queries
from flaskprod.runtime.deadline import RequestTimeout, call_with_deadline
from flaskprod.spec import Spec
from tests.conftest import StartServer
from tests.mariadb import ThrowawayMariaDB
from tests.support import wait_for
from tests.test_runtime_db import HOLDING_APP

pytestmark = pytest.mark.integration

# The PostgreSQL tests' app, sleeping MySQL's way.
APP = HOLDING_APP.replace("pg_sleep", "SLEEP")
HOLD = 6  # seconds the query would run: well past the 1 s deadline, and past the 2 s the tests give its kill


@pytest.mark.parametrize(
    "args",
    [
        ("--set", "server.worker_class=gevent"),
        ("--threads", "1"),  # a sync worker: the deadline is SIGALRM's
        ("--server", "uwsgi", "--threads", "1"),
    ],
    ids=["gevent", "sync", "uwsgi-sync"],
)
def test_a_query_past_the_deadline_is_killed_and_answered_504(
    serve_app: StartServer, mariadb: ThrowawayMariaDB, args: tuple[str, ...]
) -> None:
    """PyMySQL reads the answer in Python, where the deadline lands: stopped partway through a packet, the
    pool's rollback failed ("InterfaceError (0, '')"), the client got 500, and the statement ran on in MySQL."""
    server = serve_app(APP, env={"DATABASE_URL": mariadb.url}, args=(*args, "--timeout", "1"))
    for _ in range(2):
        started = time.monotonic()
        answer = server.get(f"/hold?s={HOLD}", timeout=15)
        assert answer.status_code == 504, answer.text
        assert time.monotonic() - started < 3
        wait_for(lambda: not mariadb.running("SELECT SLEEP"), timeout=2, what="the statement to be killed")
        assert server.get("/hold?s=0").text == "held"
    logs = server.stderr() + server.stdout()
    assert "InterfaceError" not in logs


def test_the_kill_connects_as_the_interrupted_connection_did_connect_args_included(mariadb: ThrowawayMariaDB) -> None:
    """The deadline's SIGALRM (this is the main thread) lands in PyMySQL's read. The kill's connection is opened with
    the interrupted one's own parameters: here the password comes in connect_args, as from a secret file, and the
    URL has none. Made from the URL alone, the kill was refused, and the statement ran on."""
    url = sqlalchemy.make_url(mariadb.url)
    without_password = sqlalchemy.URL.create(url.drivername, url.username, None, url.host, url.port, url.database)
    engine = sqlalchemy.create_engine(without_password, connect_args={"password": url.password}, pool_size=1)
    interrupted_queries.watch_engines_for_interrupted_queries()
    try:
        with engine.connect() as conn, pytest.raises(RequestTimeout):
            call_with_deadline(0.5, 0.0, conn.execute, sqlalchemy.text(f"SELECT SLEEP({HOLD})"))
        wait_for(lambda: not mariadb.running("SELECT SLEEP"), timeout=2, what="the statement to be killed")
        with engine.connect() as conn:  # the interrupted connection was dropped: a new one
            assert conn.scalar(sqlalchemy.text("SELECT 1")) == 1
    finally:
        engine.dispose()


def test_on_threads_the_deadline_comes_with_the_answer_and_is_answered_504(
    serve_app: StartServer, mariadb: ThrowawayMariaDB
) -> None:
    """A thread waits for MySQL's answer inside a socket read, which the deadline's exception cannot interrupt: it
    lands once the answer comes, in PyMySQL's reading of it, which answered 500 the same way."""
    args = ("--threads", "4", "--timeout", "1", "--set", "database.statement_timeout=0")
    server = serve_app(APP, env={"DATABASE_URL": mariadb.url}, args=args)
    for _ in range(2):
        assert server.get("/hold?s=2", timeout=15).status_code == 504
        assert server.get("/hold?s=0").text == "held"
    assert "InterfaceError" not in server.stderr() + server.stdout()


def test_a_request_sets_mariadbs_statement_timeout_and_a_job_does_not(mariadb: ThrowawayMariaDB) -> None:
    """max_statement_time, the request deadline's, on a connection a request checks out; the server's default on
    one a job's thread checks out after it. MySQL's max_execution_time stops SELECTs alone: nothing is set there."""
    spec = Spec().replace(**{"server.workers": 2, "database.statement_timeout": 0.5})
    engine = sqlalchemy.create_engine(mariadb.url, **flaskprod.pool_options(mariadb.url, spec))
    limit = sqlalchemy.text("SELECT @@SESSION.max_statement_time")
    try:
        with Flask(__name__).test_request_context(), engine.connect() as conn:
            assert conn.scalar(limit) == 0.5
            started = time.monotonic()
            with pytest.raises(sqlalchemy.exc.OperationalError, match="max_statement_time exceeded"):
                conn.execute(sqlalchemy.text("SELECT SLEEP(5)"))
            assert time.monotonic() - started < 3
        with engine.connect() as conn:  # the same connection, outside any request
            assert conn.scalar(limit) == 0
    finally:
        engine.dispose()


def test_a_query_on_threads_stops_at_the_deadline_with_mariadbs_timeout(
    serve_app: StartServer, mariadb: ThrowawayMariaDB
) -> None:
    """A thread waiting for MySQL's answer is beyond the deadline's reach until the answer comes: without the
    server's own timeout, SLEEP(60) held the thread, and the client's answer, for 60 s."""
    server = serve_app(APP, env={"DATABASE_URL": mariadb.url}, args=("--threads", "4", "--timeout", "1"))
    started = time.monotonic()
    assert server.get("/hold?s=60", timeout=15).status_code == 504
    assert time.monotonic() - started < 4
    assert not mariadb.running("SELECT SLEEP")
