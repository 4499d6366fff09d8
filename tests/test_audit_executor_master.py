"""A thread pool the app gave work to as it was imported, in the process that imports it and forks the workers
(Gunicorn's master with server.preload, uWSGI's master): that process runs the work, and its stop finishes what is
still queued there, while a poller the app also started never holds the stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StartServer
from tests.test_audit_app_threads import stopped_by_sigterm

# A pool given work at import that outlasts the start, and a never-ending poller beside it.
APP = """
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from flaskprod import Production

pool = ThreadPoolExecutor(max_workers=1)


def send(n):
    time.sleep(0.5)
    with open("done.txt", "a") as done:
        done.write(f"import {n}\\n")


for n in range(IMPORTED):
    pool.submit(send, n)


def poll():
    while True:
        time.sleep(0.2)


threading.Thread(target=poll, name="poller").start()

app = Flask(__name__)
Production(app)


@app.get("/ok")
def ok():
    return "ok"
"""

IMPORTED = 10

SERVERS = {
    "gunicorn-preload": ("--server", "gunicorn", "--set", "server.preload=true"),
    "uwsgi": ("--server", "uwsgi"),
}


@pytest.mark.integration
@pytest.mark.parametrize("server_args", SERVERS.values(), ids=SERVERS.keys())
def test_the_masters_stop_finishes_its_pools_work_and_names_only_the_poller(
    serve_app: StartServer, tmp_path: Path, server_args: tuple[str, ...]
) -> None:
    server = serve_app(
        APP.replace("IMPORTED", str(IMPORTED)),
        args=(*server_args, "--set", "server.drain_delay=0"),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    assert server.get("/ok").status_code == 200
    # The import's tasks take 5 s in all, most still queued now: the stop must not cut them (graceful_timeout 30 s).
    assert stopped_by_sigterm(server) == 0, server.output()
    done = (tmp_path / "done.txt").read_text().splitlines() if (tmp_path / "done.txt").exists() else []
    assert sorted(done, key=lambda line: int(line.split()[1])) == [f"import {n}" for n in range(IMPORTED)], (
        server.output()
    )
    # The pool's thread ran work for the app and ended: it is no poller to name, at the start or at the stop.
    assert "ThreadPoolExecutor" not in server.stderr(), server.output()
    if "gunicorn" in server_args:
        assert "not waiting for the app's threads in Gunicorn's master (poller)" in server.stderr(), server.output()
