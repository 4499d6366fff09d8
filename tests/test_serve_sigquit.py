"""SIGQUIT to `flaskprod serve` alone (`kill -QUIT`, a supervisor's quick stop): Gunicorn's own meaning of it, a stop
at once as Ctrl-C's, under either server. uWSGI's serve left it unhandled: Python's default dumped serve's core, and
uWSGI's master and workers served on, orphaned."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.conftest import StartServer
from tests.support import wait_for

# A multiprocessing.Pool made at import: its processes are the importing process's (uWSGI's master, each Gunicorn
# worker), and must end with the stop too.
APP = """
import multiprocessing
import os

from flask import Flask
from flaskprod import Production

pool = multiprocessing.Pool(1)

app = Flask(__name__)
Production(app)


@app.get("/ok")
def ok():
    return str(os.getpid())
"""

# Seconds within which serve must have ended after the signal: far below the graceful timeout below.
STOP_BOUND = 20
GRACEFUL = 60


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.integration
@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_sigquit_to_serve_alone_stops_every_process_at_once(serve_app: StartServer, server: str) -> None:
    served = serve_app(
        APP,
        workers=2,
        args=("--server", server, "--set", "server.drain_delay=0", "--set", f"server.graceful_timeout={GRACEFUL}"),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    # Every worker serving first: a Gunicorn worker told to quit while it still imports the app (forking the pool)
    # ends with Python's "Exception ignored" traceback from the fork hook, a boot-time race this test is not about.
    answered: set[str] = set()

    def both_workers_answered() -> bool:
        response = served.get("/ok")
        assert response.status_code == 200
        answered.add(response.text)
        return len(answered) == 2

    wait_for(both_workers_answered, timeout=15, what="both workers to answer")
    group = served.proc.pid  # serve leads its session's group: its server's processes are in it
    served.proc.send_signal(signal.SIGQUIT)
    try:
        code = served.proc.wait(STOP_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve still running {STOP_BOUND}s after SIGQUIT:\n{served.output()}")
    # Ctrl-C's status: the end of a stop asked for, not a crash (before, on uWSGI: killed by SIGQUIT, core dumped).
    assert code == 0, served.output()
    try:
        wait_for(lambda: not group_alive(group), timeout=10, what="serve's processes to end")
    except AssertionError:
        left = subprocess.run(["ps", "-o", "pid,stat,args", "-g", str(group)], capture_output=True, text=True).stdout
        pytest.fail(f"left behind after serve's SIGQUIT:\n{left}\n{served.output()}")
    assert "Traceback" not in served.stderr(), served.output()
