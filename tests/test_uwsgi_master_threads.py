"""A thread the app starts as it loads runs in uWSGI's master (lazy-apps is off), and may hold the GIL when the
master forks a worker. The workers must serve all the same: Flask-Limiter's memory storage starts such a thread,
and under py-call-osafterfork a worker forked while it ran waited for the GIL for ever."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StartServer
from tests.support import wait_for

# The thread wants the GIL for its whole life (a few seconds of pure Python), so the master, which gives the GIL up
# once the app is loaded and forks from C, forks while the thread holds it. Each worker notes itself as it forks.
APP = """
import os
import threading
import time
from pathlib import Path

from flask import Flask
from flaskprod import Production


def spin():
    until = time.monotonic() + 4
    while time.monotonic() < until:
        sum(range(1000))


threading.Thread(target=spin, daemon=True).start()
os.register_at_fork(after_in_child=lambda: Path(f"forked-{os.getpid()}").touch())

app = Flask(__name__)
Production(app)


@app.get("/pid")
def pid():
    return str(os.getpid())
"""


@pytest.mark.integration
def test_workers_forked_while_an_app_thread_holds_the_gil_serve(serve_app: StartServer, tmp_path: Path) -> None:
    server = serve_app(APP, workers=2, args=("--server", "uwsgi"))

    def workers_past_their_fork() -> set[int] | None:
        pids = {int(p.name.removeprefix("forked-")) for p in tmp_path.glob("forked-*")}
        return pids if len(pids) >= 2 else None

    pids = wait_for(workers_past_their_fork, timeout=15, what="both workers past their fork")
    assert len(pids) == 2
    assert int(server.get("/pid").text) in pids
