"""uWSGI's master finishes the work the app queued in a thread pool as it was imported within
server.graceful_timeout counted from serve's stop, not from the master's own exit (which comes once its workers have
finished): work that outlasts it is cut by the master, which says so, and serve's message about workers it kills is
never false."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.conftest import Server, StartServer
from tests.test_audit_app_threads import stopped_by_sigterm

# Work given to a pool at import that outlasts the graceful timeout many times over.
APP = """
import time
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from flaskprod import Production

pool = ThreadPoolExecutor(max_workers=1)
for _ in range(200):
    pool.submit(time.sleep, 0.5)

app = Flask(__name__)
Production(app)


@app.get("/ok")
def ok():
    return "ok"
"""

GRACEFUL = 3


@pytest.mark.integration
def test_the_masters_pools_are_cut_at_the_graceful_timeout_from_the_stop(serve_app: StartServer) -> None:
    server = serve_app(
        APP,
        args=("--server", "uwsgi", "--set", "server.drain_delay=0", "--set", f"server.graceful_timeout={GRACEFUL}"),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    assert server.get("/ok").status_code == 200
    stopped_by_sigterm(server)
    # Before, the master waited GRACEFUL seconds from its own exit: serve killed it first, naming the workers.
    assert "workers still running" not in server.stderr(), server.output()
    assert "still running" not in server.stderr(), server.output()
    assert (
        "cutting the work still queued in the app's thread pools in uWSGI's master: "
        f"server.graceful_timeout = {GRACEFUL}s ran out"
    ) in server.stderr(), server.output()


# Long enough that a wait for it shows past the bound below.
LONG_GRACEFUL = 60
STOP_NOW_BOUND = 20


def _stopped_by(server: Server, sig: int, *, group: bool) -> int:
    """serve's exit status after sig, to serve alone or to its whole group (Ctrl-C at a terminal reaches uWSGI's
    master too); the test fails if it is still running STOP_NOW_BOUND seconds later."""
    if group:
        os.killpg(server.proc.pid, sig)
    else:
        server.proc.send_signal(sig)
    try:
        return server.proc.wait(STOP_NOW_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve still running {STOP_NOW_BOUND}s after {signal.Signals(sig).name}:\n{server.output()}")


@pytest.mark.integration
@pytest.mark.parametrize("group", [False, True], ids=["to-serve", "to-group"])
def test_ctrl_c_cuts_the_masters_pools_at_once(serve_app: StartServer, group: bool) -> None:
    server = serve_app(
        APP,
        args=(
            "--server", "uwsgi", "--set", "server.drain_delay=0", "--set", f"server.graceful_timeout={LONG_GRACEFUL}",
        ),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    assert server.get("/ok").status_code == 200
    # Before, only SIGTERM gave the master a deadline: after SIGINT it waited LONG_GRACEFUL seconds from its exit.
    _stopped_by(server, signal.SIGINT, group=group)
    assert "still running" not in server.stderr(), server.output()
    assert "graceful_timeout" not in server.stderr(), server.output()
    # The master's exit hook, entered in a worker ending on SIGINT with Python finalized, crashed it.
    assert "Segmentation Fault" not in server.stderr(), server.output()
    assert (
        "cutting the work still queued in the app's thread pools in uWSGI's master: stopped at once (SIGINT)"
    ) in server.stderr(), server.output()


@pytest.mark.integration
def test_a_sigterm_after_ctrl_c_gives_the_masters_pools_no_more_time(serve_app: StartServer) -> None:
    server = serve_app(
        APP,
        args=(
            "--server", "uwsgi", "--set", "server.drain_delay=0", "--set", f"server.graceful_timeout={LONG_GRACEFUL}",
        ),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    assert server.get("/ok").status_code == 200
    server.proc.send_signal(signal.SIGINT)
    # Before, the SIGTERM (an orchestrator's stop as the operator pressed Ctrl-C) wrote a deadline LONG_GRACEFUL
    # seconds away over the SIGINT's, which the master read again as it waited.
    _stopped_by(server, signal.SIGTERM, group=False)
    assert "still running" not in server.stderr(), server.output()
    assert (
        "cutting the work still queued in the app's thread pools in uWSGI's master: stopped at once (SIGINT)"
    ) in server.stderr(), server.output()
