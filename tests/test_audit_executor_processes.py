"""Process pools a Flask app starts as it is imported, where the master imports it and forks the workers (uWSGI's
master, Gunicorn's with server.preload): their helper threads stay behind in the master, so serve says so once at the
start, and the pools still end with serve's stop: no hang, and none of their processes outlives it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import Server, StartServer
from tests.test_audit_app_threads import stopped_by_sigterm

# A ProcessPoolExecutor given work at import (its processes then run in the master), and a multiprocessing.Pool,
# whose processes start with it.
APP = """
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from flask import Flask
from flaskprod import Production

executor = ProcessPoolExecutor(max_workers=2)
assert executor.submit(pow, 3, 2).result(timeout=10) == 9
pool = multiprocessing.Pool(2)

app = Flask(__name__)
Production(app)


@app.get("/ok")
def ok():
    return "ok"
"""

SERVERS = {
    "gunicorn-preload": (
        ("--server", "gunicorn", "--set", "server.preload=true"),
        "Gunicorn's master (server.preload)",
    ),
    "uwsgi": (("--server", "uwsgi"), "uWSGI's master"),
}
# Seconds the pools' processes get to be gone once serve has exited.
GONE_BOUND = 10


def session_processes(server: Server) -> list[int]:
    """The processes left in serve's session (it starts one of its own), serve's own excepted."""
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == server.proc.pid and int(stat.parent.name) != server.proc.pid and fields[0] != "Z":
            left.append(int(stat.parent.name))
    return left


def serve_pools(serve_app: StartServer, server_args: tuple[str, ...]) -> Server:
    server = serve_app(
        APP, workers=2, args=(*server_args, "--set", "server.drain_delay=0"), env={"FLASKPROD_LOGGING__FORMAT": "text"}
    )
    assert server.get("/ok").status_code == 200
    return server


@pytest.mark.integration
@pytest.mark.parametrize(("server_args", "master"), SERVERS.values(), ids=SERVERS.keys())
def test_process_pools_started_at_import_are_named_once_at_the_start(
    serve_app: StartServer, server_args: tuple[str, ...], master: str
) -> None:
    server = serve_pools(serve_app, server_args)
    told = (
        "a concurrent.futures.ProcessPoolExecutor and a multiprocessing.Pool started by the app as it was imported, "
        f"in {master}: the fork leaves their helper threads behind"
    )
    assert server.stderr().count(told) == 1, server.output()
    assert "create the pool in each worker" in server.stderr()


@pytest.mark.integration
@pytest.mark.parametrize(("server_args", "master"), SERVERS.values(), ids=SERVERS.keys())
def test_process_pools_started_at_import_end_with_the_stop(
    serve_app: StartServer, server_args: tuple[str, ...], master: str
) -> None:
    server = serve_pools(serve_app, server_args)
    # Before the fix Gunicorn's master waited for ever on a pool process a worker's exit had killed.
    assert stopped_by_sigterm(server) == 0, server.output()
    deadline = time.monotonic() + GONE_BOUND
    while (left := session_processes(server)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], server.output()
    # A worker's exit no longer takes the master's processes for its own, nor the master the executor's thread for a
    # poller.
    assert "can only join a child process" not in server.stderr(), server.output()
    assert "not waiting for the app's threads" not in server.stderr(), server.output()
