"""Production(app) on MySQL (a real MariaDB) through PyMySQL: a query past the request's deadline."""

from __future__ import annotations

import time

import pytest

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


def test_on_threads_the_deadline_comes_with_the_answer_and_is_answered_504(
    serve_app: StartServer, mariadb: ThrowawayMariaDB
) -> None:
    """A thread waits for MySQL's answer inside a socket read, which the deadline's exception cannot interrupt: it
    lands once the answer comes, in PyMySQL's reading of it, which answered 500 the same way."""
    server = serve_app(APP, env={"DATABASE_URL": mariadb.url}, args=("--threads", "4", "--timeout", "1"))
    for _ in range(2):
        assert server.get("/hold?s=2", timeout=15).status_code == 504
        assert server.get("/hold?s=0").text == "held"
    assert "InterfaceError" not in server.stderr() + server.stdout()
