"""A uWSGI worker that has served its last request but does not exit: a non-daemon thread the app started in it at
the fork (as the README advises for work each worker does) is joined by Python's exit, for ever. serve ends the stop
at server.graceful_timeout, and says what can hold a worker and how to let it go, where it blamed requests alone."""

from __future__ import annotations

import time

import pytest

from tests.conftest import StartServer
from tests.test_audit_app_threads import stopped_by_sigterm

APP = """
import os
import threading
import time

from flask import Flask
from flaskprod import Production

app = Flask(__name__)
Production(app)


def poll():
    while True:
        time.sleep(0.2)


def start_polling():
    threading.Thread(target=poll, name="poller").start()  # not a daemon


os.register_at_fork(after_in_child=start_polling)


@app.get("/threads")
def threads():
    return ",".join(sorted(t.name for t in threading.enumerate()))
"""

GRACEFUL = 3
# serve's own bound past graceful_timeout: uwsgi.CUT_GRACE, then the time to reap.
BOUND = GRACEFUL + 15


@pytest.mark.integration
def test_a_worker_held_by_the_apps_thread_is_ended_at_the_graceful_timeout_and_told(serve_app: StartServer) -> None:
    server = serve_app(
        APP, args=("--server", "uwsgi", "--set", f"server.graceful_timeout={GRACEFUL}", "--set", "server.drain_delay=0")
    )
    assert "poller" in server.get("/threads").text.split(",")
    started = time.monotonic()
    stopped_by_sigterm(server, BOUND)
    # The thread held the worker: nothing ended it sooner.
    assert time.monotonic() - started >= GRACEFUL, server.output()
    told = server.stderr()
    assert f"uWSGI's workers still running server.graceful_timeout = {GRACEFUL}s after SIGTERM" in told, told
    assert "a non-daemon thread of the app's" in told and "daemon=True" in told
