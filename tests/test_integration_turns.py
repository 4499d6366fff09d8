"""server.fair_gil under real servers: with threads, every request yields the interpreter lock once before the app
runs; with one thread, or the setting off, the app is called directly."""

from __future__ import annotations

import pytest

from tests.conftest import StartServer

pytestmark = pytest.mark.integration

# os.sched_yield counted where the server's wrapper looks it up, at call time, and every request the app is handed.
APP = """
import os
import threading

from flask import Flask

from flaskprod import Production

_yield = os.sched_yield
_lock = threading.Lock()
YIELDS = 0
SERVED = 0


def counted_yield():
    global YIELDS
    with _lock:
        YIELDS += 1
    _yield()


os.sched_yield = counted_yield

app = Flask(__name__)
Production(app)
_inner = app.wsgi_app


def counted(environ, start_response):  # every request the server hands the app, /healthz included
    global SERVED
    with _lock:
        SERVED += 1
    return _inner(environ, start_response)


app.wsgi_app = counted


@app.get("/turns")
def turns():
    with _lock:
        return {"pid": os.getpid(), "yields": YIELDS, "served": SERVED}
"""


def counts(serve_app: StartServer, kind: str, *args: str) -> list[dict[str, int]]:
    server = serve_app(APP, workers=1, args=("--server", kind, *args))
    answers = []
    for _ in range(5):
        response = server.get("/turns")
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
def test_with_threads_each_request_yields_the_lock_before_the_app_runs(serve_app: StartServer, kind: str) -> None:
    answers = counts(serve_app, kind, "--threads", "4")
    # The yield comes first: when the view runs, this request's yield is counted already.
    assert all(a["yields"] == a["served"] for a in answers), answers
    assert answers[-1]["served"] >= 5


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
@pytest.mark.parametrize("args", [("--threads", "1"), ("--threads", "4", "--set", "server.fair_gil=false")],
                         ids=["one-thread", "off"])  # fmt: skip
def test_one_thread_or_the_setting_off_calls_the_app_directly(
    serve_app: StartServer, kind: str, args: tuple[str, ...]
) -> None:
    answers = counts(serve_app, kind, *args)
    assert all(a["yields"] == 0 for a in answers), answers
    assert answers[-1]["served"] >= 5


def test_gevents_greenlets_call_the_app_directly(serve_app: StartServer) -> None:
    """Greenlets hand over only where they wait, so none races another for the lock."""
    answers = counts(serve_app, "gunicorn", "--threads", "4", "--set", "server.worker_class=gevent")
    assert all(a["yields"] == 0 for a in answers), answers
    assert answers[-1]["served"] >= 5
