"""A Flask app's concurrent.futures thread pool, whose threads start as the app is imported (work submitted at import),
and which requests then give work to (an email sent after the response): every task a request queued is done once, by
the time serve has stopped, wherever the server imports the app."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StartServer
from tests.test_audit_app_threads import stopped_by_sigterm

# One thread, started at import by the tasks submitted there: a worker that forks with the pool has no thread left
# to run the work. Each task takes a moment, so requests' tasks are still queued when serve is told to stop.
APP = """
import os
import time
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from flaskprod import Production

pool = ThreadPoolExecutor(max_workers=1)


def send(what):
    time.sleep(0.2)
    with open("done.txt", "a") as done:
        done.write(f"{what}\\n")


for n in range(IMPORTED):
    pool.submit(send, f"import {os.getpid()} {n}")

app = Flask(__name__)
Production(app)


@app.get("/queue/<int:count>")
def queue(count):
    for n in range(count):
        pool.submit(send, f"request {n}")
    return str(os.getpid())
"""

IMPORTED = 3
QUEUED = 8

SERVERS = {
    "gunicorn": ("--server", "gunicorn"),
    "gunicorn-preload": ("--server", "gunicorn", "--set", "server.preload=true"),
    "uwsgi": ("--server", "uwsgi"),
}


@pytest.mark.integration
@pytest.mark.parametrize("server_args", SERVERS.values(), ids=SERVERS.keys())
def test_work_queued_to_an_imported_pool_is_done_once_by_the_stop(
    serve_app: StartServer, tmp_path: Path, server_args: tuple[str, ...]
) -> None:
    server = serve_app(
        APP.replace("IMPORTED", str(IMPORTED)),
        args=(*server_args, "--set", "server.drain_delay=0"),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    assert server.get(f"/queue/{QUEUED}").status_code == 200
    # Most of the requests' tasks are still queued: the stop must not cut them (graceful_timeout is 30 s).
    assert stopped_by_sigterm(server) == 0, server.output()
    done = (tmp_path / "done.txt").read_text().splitlines() if (tmp_path / "done.txt").exists() else []
    requested = [line for line in done if line.startswith("request ")]
    assert sorted(requested) == sorted(f"request {n}" for n in range(QUEUED)), server.output()
    # The tasks submitted at import are run by the process that imported the app, not again by each forked worker.
    imported = [line.rsplit(" ", 1)[1] for line in done if line.startswith("import ")]
    assert sorted(imported) == [str(n) for n in range(IMPORTED)], done
