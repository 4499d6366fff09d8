"""Liveness and readiness of an app under `flaskprod serve`, against a real PostgreSQL stopped and started for real."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from flaskprod.spec import Spec
from tests.conftest import Postgres, Server, StartServer
from tests.pg import ThrowawayPostgres
from tests.support import free_port, wait_for

pytestmark = pytest.mark.integration

# Production(app) comes before db.init_app(app), as the docs show; it finds the engine on its own.
DB_APP = """
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flaskprod import Production

db = SQLAlchemy()
app = Flask(__name__)
Production(app)
db.init_app(app)


@app.get("/")
def index():
    return "ok"
"""

CHECK_TIMEOUT = Spec().monitoring.check_timeout
# The name Production gives the check of Flask-SQLAlchemy's default engine.
DB_CHECK = "database"
# Time for the request itself, process scheduling on a loaded 2-core machine and the JSON reply.
MARGIN = 1.5


def readyz(server: Server) -> tuple[requests.Response, float]:
    """GET /readyz and how long it took; the client waits well past the check timeout to see a hang."""
    started = time.monotonic()
    response = server.get("/readyz", timeout=CHECK_TIMEOUT + 10)
    return response, time.monotonic() - started


def failing_checks(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: check for name, check in body["checks"].items() if check["status"] != "ok"}


def test_healthz_and_readyz_report_the_database_check(serve_app: StartServer, postgres: Postgres) -> None:
    server = serve_app(DB_APP, workers=2, env={"DATABASE_URL": postgres.url})

    health = server.get("/healthz")
    assert health.status_code == 200

    ready, _ = readyz(server)
    assert ready.status_code == 200, ready.text
    assert ready.headers["Content-Type"].startswith("application/json")
    body = ready.json()
    assert body["status"] == "ok"
    assert DB_CHECK in body["checks"], f"no database check registered: {body}"
    for name, check in body["checks"].items():
        assert check["status"] == "ok", (name, check)
        assert isinstance(check["time_ms"], (int, float)) and check["time_ms"] >= 0
        assert not check.get("error")


@pytest.fixture
def restarted_cluster(postgres_cluster: ThrowawayPostgres) -> Iterator[ThrowawayPostgres]:
    """The throwaway cluster, guaranteed running again after the test whatever happened in it."""
    yield postgres_cluster
    if not postgres_cluster.is_running():
        postgres_cluster.start()


def test_readyz_is_503_while_postgres_is_stopped_and_200_once_it_is_back(
    serve_app: StartServer, restarted_cluster: ThrowawayPostgres
) -> None:
    server = serve_app(DB_APP, workers=2, env={"DATABASE_URL": restarted_cluster.url})
    before, _ = readyz(server)
    assert before.status_code == 200, before.text

    restarted_cluster.stop()
    assert not restarted_cluster.is_running()
    # Both workers hold pooled connections now cut by the shutdown; every probe must see the outage.
    for _ in range(3):
        down, elapsed = readyz(server)
        assert down.status_code == 503, down.text
        assert elapsed < CHECK_TIMEOUT + MARGIN, f"/readyz took {elapsed:.1f}s with the database down"
        body = down.json()
        assert body["status"] != "ok"
        failing = failing_checks(body)
        assert list(failing) == [DB_CHECK], f"503 without naming the failing check: {body}"
        assert failing[DB_CHECK]["error"], body
    # Liveness has no dependencies: a database outage must not get the app restarted.
    assert server.get("/healthz").status_code == 200

    restarted_cluster.start()
    wait_for(lambda: readyz(server)[0].status_code == 200, timeout=15, interval=0.2, what="/readyz 200 after restart")
    for _ in range(3):  # every worker, not just one that happened to reconnect
        again, _ = readyz(server)
        assert again.status_code == 200, again.text


@pytest.fixture
def silent_database() -> Iterator[int]:
    """A port on 127.0.0.1 that completes TCP handshakes and then never says a word, like a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen(64)  # never accepted: the kernel's backlog completes the handshakes
        yield listener.getsockname()[1]


def test_readyz_is_503_within_the_check_timeout_when_the_database_hangs(
    serve_app: StartServer, silent_database: int
) -> None:
    url = f"postgresql+psycopg2://app@127.0.0.1:{silent_database}/app"
    server = serve_app(DB_APP, workers=1, env={"DATABASE_URL": url})
    for _ in range(2):  # a second probe must not queue behind the first one's stuck connection
        response, elapsed = readyz(server)
        assert response.status_code == 503, response.text
        assert elapsed < CHECK_TIMEOUT + MARGIN, f"/readyz took {elapsed:.1f}s against a hung database"
        assert list(failing_checks(response.json())) == [DB_CHECK], response.text
    assert server.get("/healthz").status_code == 200
