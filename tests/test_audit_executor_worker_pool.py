"""A multiprocessing.Pool a Flask app creates as each Gunicorn worker imports it (no server.preload), which requests
use: its processes end when the worker's exit terminates the pool, so the stop never waits for
server.graceful_timeout, and none of them outlives serve."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Server, StartServer
from tests.test_audit_app_threads import stopped_by_sigterm
from tests.test_audit_executor_processes import GONE_BOUND, session_processes

APP = """
import multiprocessing

from flask import Flask
from flaskprod import Production

pool = multiprocessing.Pool(POOL_SIZE)

app = Flask(__name__)
Production(app)


@app.get("/square/<int:n>")
def square(n):
    return str(pool.apply_async(pow, (n, 2)).get(10))


@app.get("/pool")
def pool_pids():
    return " ".join(str(p.pid) for p in pool._pool)
"""

POOL_SIZE = 4
# Above the bound serve's stop is given: the arbiter's kill at its end cannot be what ends a hung worker.
GRACEFUL = 60
STOP_BOUND = 20


def serve_pool(serve_app: StartServer) -> Server:
    server = serve_app(
        APP.replace("POOL_SIZE", str(POOL_SIZE)),
        workers=2,
        args=("--server", "gunicorn", "--set", "server.drain_delay=0", "--set", f"server.graceful_timeout={GRACEFUL}"),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    for n in range(8):
        assert server.get(f"/square/{n}").text == str(n * n), server.output()
    return server


def ended(pid: int) -> bool:
    """Whether the process is gone or a zombie its parent has yet to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.integration
def test_a_pool_process_a_worker_started_ends_on_sigterm(serve_app: StartServer) -> None:
    # What Pool.terminate() sends each process at the worker's exit. It inherited the worker's handler, which only
    # marked it as stopping: the worker then waited for it until the arbiter killed them (1 stop in 3).
    server = serve_pool(serve_app)
    pid = int(server.get("/pool").text.split()[0])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + GONE_BOUND
    while not ended(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ended(pid), server.output()


@pytest.mark.integration
def test_workers_with_a_pool_of_their_own_stop_without_waiting_out_the_graceful_timeout(
    serve_app: StartServer,
) -> None:
    server = serve_pool(serve_app)
    assert stopped_by_sigterm(server, bound=STOP_BOUND) == 0, server.output()
    deadline = time.monotonic() + GONE_BOUND
    while (left := session_processes(server)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], server.output()
    assert "Traceback" not in server.stderr(), server.output()
