"""Production(app) under Gunicorn's gevent worker (server.worker_class = "gevent", and auto's pick for a
Flask-SocketIO app on gevent): each request is a greenlet of one thread, which the deadline's watchdog cannot
reach; its lock, made before the worker patches threading, answered every request 500."""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import Postgres, StartServer, server_env
from tests.support import BIN, free_port, readable, wait_for
from tests.test_runtime_db import BACKEND_APP, sleeping

pytestmark = pytest.mark.integration

APP = """
import time

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/api/ping")
def ping():
    return {"ok": True}


@app.get("/api/slow")
def slow():
    time.sleep(8)  # gevent's, patched: the greenlet waits, the others run
    return {"slept": 8}
"""


def test_requests_are_answered_and_stopped_at_the_deadline_without_holding_the_others(
    serve_app: StartServer,
) -> None:
    server = serve_app(APP, args=("--set", "server.worker_class=gevent", "--timeout", "1"))
    assert "Using worker: gevent" in server.stderr()
    for _ in range(5):
        assert server.get("/api/ping").json() == {"ok": True}
    slow: list[tuple[requests.Response, float]] = []
    waiting = threading.Thread(target=lambda: slow.append((server.get("/api/slow"), time.monotonic())))
    waiting.start()
    try:
        time.sleep(0.3)
        assert server.get("/api/ping").json() == {"ok": True}
        pinged = time.monotonic()
    finally:
        waiting.join(timeout=15)
    [(answer, answered)] = slow
    assert answer.status_code == 504  # the deadline's (1 s), not the view's answer after 8 s
    assert pinged < answered  # answered beside the sleeping greenlet, not after it

    def slow_lines() -> list[dict[str, Any]]:
        return [r for r in server.json_lines() if r.get("url", {}).get("path") == "/api/slow"]

    # The worker's output reaches the file through the server's relay, a moment after the answer.
    [record] = wait_for(slow_lines, timeout=5, what="the access line of /api/slow")
    assert record["http"]["response"]["status_code"] == 504
    metrics = server.get("/metrics").text
    assert 'http_requests_total{endpoint="/api/ping",method="GET",status="200"} 6.0' in metrics, metrics
    assert 'http_requests_total{endpoint="/api/slow",method="GET",status="504"} 1.0' in metrics, metrics


DB_APP = BACKEND_APP + """

@app.get("/statement-timeout")
def statement_timeout():
    return db.session.execute(sa.text("SHOW statement_timeout")).scalar()


@app.get("/api/ping")
def ping():
    return {"ok": True}
"""


def test_a_query_waits_in_gevents_loop_so_the_worker_answers_others_meanwhile(
    serve_app: StartServer, postgres: Postgres
) -> None:
    """psycopg2 waits for the database inside libpq, where gevent cannot switch: one query stopped every request of
    its worker. flaskprod gives psycopg2 a wait callback that waits in gevent's loop."""
    server = serve_app(DB_APP, env={"DATABASE_URL": postgres.url}, args=("--set", "server.worker_class=gevent"))
    with ThreadPoolExecutor(1) as holder:
        held = holder.submit(server.get, "/hold?s=4", timeout=15)
        wait_for(lambda: sleeping(postgres.url), timeout=5, what="the request's query on the database")
        assert server.get("/api/ping").json() == {"ok": True}
        assert not held.done()  # answered while the query still ran
        assert held.result().text == "held"
    # PostgreSQL's own timeout comes a second after the deadline's cancel (30 s), rather than racing it to a 500.
    assert server.get("/statement-timeout").text == "31s"


@pytest.mark.parametrize(("driver", "kept"), [("psycopg2", True), ("psycopg", True), ("pg8000", False)])
def test_a_query_past_the_deadline_is_cancelled_answered_504_and_its_connection_replaced(
    serve_app: StartServer, postgres: Postgres, driver: str, kept: bool
) -> None:
    """gevent's Timeout lands in the query's wait, which cancels the statement (PostgreSQL's own timeout is off
    here, so only the cancel can stop it). psycopg2 closed a connection whose wait raised, which the pool still
    held: its rollback failed the request's teardown and the client got 500. psycopg 3 waits in gevent's loop on
    its own, and left the connection waiting for the answer: the rollback failed with "another command is already
    in progress", another 500. pg8000, pure Python too, was stopped partway through a message: its connection is
    dropped, once its cancel request is sent."""
    args = ("--set", "server.worker_class=gevent", "--timeout", "1", "--set", "database.statement_timeout=0")
    url = sa.make_url(postgres.url).set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)
    server = serve_app(DB_APP, env={"DATABASE_URL": url}, args=args)
    backend = server.get("/backend").text
    for _ in range(2):
        assert server.get("/hold?s=60").status_code == 504
        wait_for(lambda: not sleeping(postgres.url), timeout=10, what="the cancelled statement to end")
        assert (server.get("/backend").text == backend) is kept  # the pool kept its connection, or dropped it
    logs = server.stderr() + server.stdout()
    assert "connection already closed" not in logs and "another command is already in progress" not in logs


def test_a_worker_class_the_installed_gunicorn_lacks_is_refused_in_one_line(tmp_path: Path) -> None:
    """Gunicorn's own failure was a traceback from its arbiter ("Entry point ('gunicorn.workers', 'eventlet') not
    found"): recent releases dropped the eventlet worker."""
    (tmp_path / "app.py").write_text(APP)
    args = ["serve", "app:app", "--bind", f"127.0.0.1:{free_port()}", "--set", "server.worker_class=eventlet"]
    refused = subprocess.run(
        [str(BIN / "flaskprod"), *args], cwd=tmp_path, env=server_env(), capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2, refused.stderr
    assert readable(refused.stderr).splitlines()[-1] == (  # serve's refusal is a JSON record on a pipe
        "Error: server.worker_class = 'eventlet': the Gunicorn installed has no eventlet worker (recent releases "
        'dropped it); use "gevent" or "gthread"'
    )
