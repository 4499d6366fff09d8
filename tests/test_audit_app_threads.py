"""A Flask app that does background work in a thread it starts as it is imported (a poller, a scheduler): under
Gunicorn with server.preload that thread runs in the master alone, and a non-daemon one must not keep serve from
ending when it is told to stop."""

from __future__ import annotations

import signal
import subprocess

import pytest

from tests.conftest import StartServer

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


@pytest.mark.integration
def test_preloaded_app_thread_does_not_keep_serve_from_stopping(serve_app: StartServer) -> None:
    server = serve_app(
        APP,
        workers=2,
        args=("--server", "gunicorn", "--set", "server.preload=true", "--set", "server.drain_delay=0"),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    assert server.get("/pid").status_code == 200
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(STOP_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve still running {STOP_BOUND}s after SIGTERM:\n{server.output()}")
    assert code == 0, server.output()
    # The user learns why the thread was left, and where it belongs.
    assert "not waiting for the app's threads in Gunicorn's master (poller)" in server.stderr(), server.output()
    assert "post_fork hook, or on the first request" in server.stderr()
