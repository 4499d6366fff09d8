"""uWSGI's master finishes the work the app queued in a thread pool as it was imported within
server.graceful_timeout counted from serve's stop, not from the master's own exit (which comes once its workers have
finished): work that outlasts it is cut by the master, which says so, and serve's message about workers it kills is
never false."""

from __future__ import annotations

import pytest

from tests.conftest import StartServer
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
