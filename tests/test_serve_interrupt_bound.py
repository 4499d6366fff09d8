"""After Ctrl-C, serve ends within a bound of its own (stopnow.STOP_AT_ONCE_BOUND) when what it stops does not: a
worker that takes no signal (a view stuck in C code; here, stopped outright) kept uWSGI's master, and so serve, waiting
for ever, Gunicorn's arbiter for server.graceful_timeout, and the app's exit handler in Gunicorn's preloaded master
held it for ever. serve kills what is left of its processes, says what in one line, and exits 1. So too after a Ctrl-C
that comes as serve stops gracefully (SIGTERM): in the drain delay, or as Gunicorn's master exits."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from tests.conftest import Server, StartServer
from tests.support import wait_for
from tests.test_serve_sigquit import group_alive

STUCK_WORKER_APP = """
import contextlib
import os
import signal

from flask import Flask
from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/stuck")
def stuck():
    open("stuck", "w").close()
    os.kill(os.getpid(), signal.SIGSTOP)  # as a view stuck in C code: no signal but SIGKILL ends it
    return "resumed"
"""

STUCK_EXIT_APP = """
import atexit
import time

from flask import Flask
from flaskprod import Production

atexit.register(time.sleep, 600)  # the app's exit handler that never returns, in the preloaded master

app = Flask(__name__)
Production(app)


@app.get("/ok")
def ok():
    return "ok"
"""

GRACEFUL = 120
# Seconds within which serve must have ended after Ctrl-C: far below GRACEFUL, well past the bound.
STOP_BOUND = 25


# The one line serve says as it kills what is left, stopnow.STOP_AT_ONCE_BOUND after Ctrl-C.
KILLED = "flaskprod: still running 5s after SIGINT (stop at once): killed "


def _ctrl_c(served: Server) -> int:
    """SIGINT to the whole group, as a terminal sends it; serve's exit status."""
    os.killpg(served.proc.pid, signal.SIGINT)
    try:
        return served.proc.wait(STOP_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve still running {STOP_BOUND}s after Ctrl-C:\n{served.output()}")


def _nothing_left(group: int, output: str) -> None:
    try:
        wait_for(lambda: not group_alive(group), timeout=10, what="serve's processes to end")
    except AssertionError:
        left = subprocess.run(["ps", "-o", "pid,stat,args", "-g", str(group)], capture_output=True, text=True).stdout
        pytest.fail(f"left behind:\n{left}\n{output}")


@pytest.mark.integration
@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_ctrl_c_kills_a_worker_that_would_not_end_within_the_bound(
    serve_app: StartServer, tmp_path: Path, server: str
) -> None:
    served = serve_app(
        STUCK_WORKER_APP,
        args=("--server", server, "--threads", "1", "--set", "server.drain_delay=0",
              "--set", f"server.graceful_timeout={GRACEFUL}"),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    client = threading.Thread(target=lambda: _quietly(served.url("/stuck")), daemon=True)
    client.start()
    wait_for((tmp_path / "stuck").exists, timeout=10, what="the view to be stuck")
    code = _ctrl_c(served)
    assert code == 1, served.output()
    said = [line for line in served.stderr().splitlines() if "killed" in line]
    assert len(said) == 1, served.output()
    assert said[0].startswith(KILLED), served.output()
    _nothing_left(served.proc.pid, served.output())
    client.join(10)


@pytest.mark.integration
def test_ctrl_c_ends_gunicorns_preloaded_master_held_by_the_apps_exit_handler(serve_app: StartServer) -> None:
    served = serve_app(
        STUCK_EXIT_APP,
        args=("--server", "gunicorn", "--set", "server.preload=true", "--set", "server.drain_delay=0",
              "--set", f"server.graceful_timeout={GRACEFUL}"),
        env={"FLASKPROD_LOGGING__FORMAT": "text"},
    )
    assert served.get("/ok").status_code == 200
    code = _ctrl_c(served)
    assert code == 1, served.output()
    assert KILLED in served.stderr(), served.output()
    _nothing_left(served.proc.pid, served.output())


@pytest.mark.integration
@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_ctrl_c_in_the_drain_delay_is_a_stop_at_once_within_the_bound(
    serve_app: StartServer, tmp_path: Path, server: str
) -> None:
    # It cut the delay short, and the graceful stop after it waited for the stuck worker until graceful_timeout.
    draining = tmp_path / "draining"
    served = serve_app(
        STUCK_WORKER_APP,
        args=("--server", server, "--threads", "1", "--set", f"server.drain_delay={GRACEFUL}",
              "--set", f"server.graceful_timeout={GRACEFUL}"),
        env={"FLASKPROD_LOGGING__FORMAT": "text", "FLASKPROD_DRAIN_FILE": str(draining)},
    )
    client = threading.Thread(target=lambda: _quietly(served.url("/stuck")), daemon=True)
    client.start()
    wait_for((tmp_path / "stuck").exists, timeout=10, what="the view to be stuck")
    served.proc.send_signal(signal.SIGTERM)
    wait_for(draining.exists, timeout=10, what="the drain delay to begin")
    code = _ctrl_c(served)
    assert code == 1, served.output()
    said = [line for line in served.stderr().splitlines() if "killed" in line]
    assert len(said) == 1 and said[0].startswith(KILLED), served.output()
    _nothing_left(served.proc.pid, served.output())
    client.join(10)


@pytest.mark.integration
def test_ctrl_c_in_gunicorns_graceful_stop_ends_its_master_held_by_the_apps_exit_handler(
    serve_app: StartServer, tmp_path: Path
) -> None:
    # Gunicorn made it its quick stop of the workers, and the master's exit then held serve for ever.
    stopping = tmp_path / "draining"  # touched as the graceful stop begins, drain_delay 0
    served = serve_app(
        STUCK_EXIT_APP,
        args=("--server", "gunicorn", "--set", "server.preload=true", "--set", "server.drain_delay=0",
              "--set", f"server.graceful_timeout={GRACEFUL}"),
        env={"FLASKPROD_LOGGING__FORMAT": "text", "FLASKPROD_DRAIN_FILE": str(stopping)},
    )
    assert served.get("/ok").status_code == 200
    served.proc.send_signal(signal.SIGTERM)
    wait_for(stopping.exists, timeout=10, what="the graceful stop to begin")
    code = _ctrl_c(served)
    assert code == 1, served.output()
    assert KILLED in served.stderr(), served.output()
    _nothing_left(served.proc.pid, served.output())


def _quietly(url: str) -> None:
    with contextlib.suppress(requests.RequestException):  # cut when the stuck worker is killed
        requests.get(url, timeout=STOP_BOUND + 10)
