"""A multiprocessing.pool.ThreadPool the app created as it was imported, in the process that imports it and forks the
workers (uWSGI's master, Gunicorn's with server.preload): the work a request gives it runs in the worker, and the work
the app queued at import is finished by the master's graceful stop, as for a concurrent.futures executor."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StartServer
from tests.support import wait_for
from tests.test_audit_app_threads import stopped_by_sigterm

# A pool given work at import that outlasts the start, and a view that gives it more and answers at once.
APP = """
import time
from multiprocessing.pool import ThreadPool

from flask import Flask
from flaskprod import Production

pool = ThreadPool(2)


def send(what, seconds):
    time.sleep(seconds)
    with open("done.txt", "a") as done:
        done.write(f"{what}\\n")


for n in range(IMPORTED):
    pool.apply_async(send, (f"import {n}", 0.5))

app = Flask(__name__)
Production(app)


@app.get("/send/<int:n>")
def send_later(n):
    pool.apply_async(send, (f"request {n}", 0.1))
    return "queued"
"""

IMPORTED = 20
REQUESTS = 4

SERVERS = {
    "gunicorn-preload": ("--server", "gunicorn", "--set", "server.preload=true"),
    "uwsgi": ("--server", "uwsgi"),
}


def _done(tmp_path: Path) -> list[str]:
    done = tmp_path / "done.txt"
    return done.read_text().splitlines() if done.exists() else []


@pytest.mark.integration
@pytest.mark.parametrize("server_args", SERVERS.values(), ids=SERVERS.keys())
def test_a_thread_pool_made_at_import_runs_the_workers_work_and_the_stop_finishes_the_masters(
    serve_app: StartServer, tmp_path: Path, server_args: tuple[str, ...]
) -> None:
    server = serve_app(
        APP.replace("IMPORTED", str(IMPORTED)),
        args=(*server_args, "--set", "server.drain_delay=0"),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    for n in range(REQUESTS):
        assert server.get(f"/send/{n}").text == "queued", server.output()
    # Before, the worker queued it for the threads the fork left behind: it never ran.
    try:
        wait_for(lambda: all(f"request {n}" in _done(tmp_path) for n in range(REQUESTS)), timeout=20,
                 what="the work requests gave the pool to run")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; done: {_done(tmp_path)}\n{server.output()}") from None
    # The import's tasks take 5 s in all (two threads), some still queued now: the graceful stop (graceful_timeout
    # 30 s) must not cut them.
    assert stopped_by_sigterm(server) == 0, server.output()
    imported = sorted(line for line in _done(tmp_path) if line.startswith("import"))
    assert imported == sorted(f"import {n}" for n in range(IMPORTED)), server.output()
    # A ThreadPool is no process pool: no warning to create it in each worker.
    assert "multiprocessing.Pool" not in server.stderr(), server.output()
