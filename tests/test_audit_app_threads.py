"""A Flask app that does background work in a thread it starts as it is imported (a poller, a scheduler): under
Gunicorn with server.preload that thread runs in the master alone, and a non-daemon one must not keep serve from
ending when it is told to stop."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Server, StartServer

# A non-daemon poller started at import, as an app's background job often is: its loop never ends.
APP = """
import os
import threading
import time

from flask import Flask
from flaskprod import Production


def poll():
    while True:
        time.sleep(0.2)


threading.Thread(target=poll, name="poller").start()

app = Flask(__name__)
Production(app)


@app.get("/pid")
def pid():
    return str(os.getpid())
"""

# Seconds serve gets to end after SIGTERM: its drain delay is 0 and no request is in hand. Before the fix it never
# ended, whatever the bound: Python's exit waited for the poller in Gunicorn's master.
STOP_BOUND = 20


def stopped_by_sigterm(server: Server, bound: float = STOP_BOUND) -> int:
    """serve's exit status after SIGTERM; the test fails if it is still running bound seconds later."""
    server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(bound)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve still running {bound}s after SIGTERM:\n{server.output()}")


@pytest.mark.integration
def test_preloaded_app_thread_does_not_keep_serve_from_stopping(serve_app: StartServer) -> None:
    server = serve_app(
        APP,
        workers=2,
        args=("--server", "gunicorn", "--set", "server.preload=true", "--set", "server.drain_delay=0"),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    assert server.get("/pid").status_code == 200
    assert stopped_by_sigterm(server) == 0, server.output()
    # The user learns why the thread was left, and where it belongs.
    assert "not waiting for the app's threads in Gunicorn's master (poller)" in server.stderr(), server.output()
    assert "os.register_at_fork(after_in_child=...), or on the first request" in server.stderr()


# The same poller, and an exit handler that shows the worker ended by exiting, not by the arbiter's SIGKILL.
APP_WITH_EXIT_HANDLER = APP + """

import atexit
from pathlib import Path

atexit.register(lambda: Path(f"exited-{os.getpid()}").touch())
"""


@pytest.mark.integration
def test_workers_exit_past_a_poller_the_app_started_at_import(serve_app: StartServer, tmp_path: Path) -> None:
    # graceful_timeout above the bound: the arbiter's kill at its end cannot be what stops the workers.
    server = serve_app(
        APP_WITH_EXIT_HANDLER,
        workers=2,
        args=("--server", "gunicorn", "--set", f"server.graceful_timeout={STOP_BOUND * 3}"),
    )
    pids = {int(server.get("/pid").text) for _ in range(8)}
    assert stopped_by_sigterm(server) == 0, server.output()
    exited = {int(p.name.removeprefix("exited-")) for p in tmp_path.glob("exited-*")}
    assert pids <= exited, server.output()


@pytest.mark.integration
def test_ctrl_c_ends_workers_past_a_poller_without_a_traceback(serve_app: StartServer, tmp_path: Path) -> None:
    server = serve_app(APP_WITH_EXIT_HANDLER, workers=2, args=("--server", "gunicorn"))
    pids = {int(server.get("/pid").text) for _ in range(8)}
    os.killpg(server.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    try:
        server.proc.wait(STOP_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve still running {STOP_BOUND}s after Ctrl-C:\n{server.output()}")
    exited = {int(p.name.removeprefix("exited-")) for p in tmp_path.glob("exited-*")}
    assert pids <= exited, server.output()
    # The exit handlers run from the thread that ends the worker: stop-now's own must not fail there.
    assert "Traceback" not in server.stderr(), server.output()


# Threads libraries start as the app loads, which run where they must: Flask-Limiter's memory storage (a
# threading.Timer, started again in a worker that needs it) and an executor's, started on first use.
APP_WITH_LIBRARY_THREADS = """
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flaskprod import Production

pool = ThreadPoolExecutor(max_workers=2)
app = Flask(__name__)
Production(app)
limiter = Limiter(get_remote_address, app=app, storage_uri="memory://")


@app.get("/pid")
def pid():
    return str(pool.submit(lambda: 1).result(timeout=5))
"""

MASTER_ALONE = "started by the app as it was imported, runs in uWSGI's master alone"


@pytest.mark.integration
def test_uwsgi_start_names_a_thread_the_app_started_at_import(serve_app: StartServer) -> None:
    server = serve_app(APP, args=("--server", "uwsgi"), env={"FLASKPROD_LOGGING__FORMAT": "text"})
    assert server.get("/pid").status_code == 200
    assert f"flaskprod: thread 'poller', {MASTER_ALONE}" in server.stderr(), server.output()


@pytest.mark.integration
def test_no_thread_named_for_library_threads_or_where_each_worker_imports(serve_app: StartServer) -> None:
    library = serve_app(APP_WITH_LIBRARY_THREADS, args=("--server", "uwsgi"), env={"FLASKPROD_LOGGING__FORMAT": "text"})
    assert library.get("/pid").status_code == 200
    # Without preload each Gunicorn worker imports the app and runs its poller: nothing to say.
    own = serve_app(APP, args=("--server", "gunicorn"), env={"FLASKPROD_LOGGING__FORMAT": "text"})
    assert own.get("/pid").status_code == 200
    for server in (library, own):
        assert "started by the app as it was imported" not in server.stderr(), server.output()
