"""A Flask app's concurrent.futures thread pool, whose threads start as the app is imported (work submitted at import),
and which requests then give work to (an email sent after the response): every task a request queued is done once, by
the time serve has stopped, wherever the server imports the app."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
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


# A thread a request starts to finish its work after the response, as Flask-Mail's asynchronous example does.
APP_STARTING_A_THREAD = """
import threading
import time

from flask import Flask
from flaskprod import Production

app = Flask(__name__)
Production(app)


def send(n):
    time.sleep(1.5)
    with open("done.txt", "a") as done:
        done.write(f"sent {n}\\n")


@app.get("/send/<int:n>")
def send_later(n):
    threading.Thread(target=send, args=(n,)).start()
    time.sleep(0.3)  # the requests sent together hold a thread each: uWSGI's other cores, not only its main thread
    return "queued"
"""

SENT = 8


@pytest.mark.integration
@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_a_thread_a_request_started_finishes_before_the_worker_stops(
    serve_app: StartServer, tmp_path: Path, server: str
) -> None:
    started = serve_app(
        APP_STARTING_A_THREAD,
        args=("--server", server, "--set", "server.drain_delay=0"),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    with ThreadPoolExecutor(SENT) as clients:
        answers = list(clients.map(lambda n: started.get(f"/send/{n}"), range(SENT)))
    assert [a.status_code for a in answers] == [200] * SENT
    assert stopped_by_sigterm(started) == 0, started.output()
    done = (tmp_path / "done.txt").read_text().splitlines() if (tmp_path / "done.txt").exists() else []
    assert sorted(done) == sorted(f"sent {n}" for n in range(SENT)), started.output()
