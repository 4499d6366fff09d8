"""server.gc_freeze under real servers: the loaded app's objects are frozen where the app was loaded,
before the fork when the master loads it (uWSGI; Gunicorn with preload), in each worker otherwise."""

from __future__ import annotations

import pytest

from tests.conftest import StartServer

pytestmark = pytest.mark.integration

KEPT = 20_000

# FORKED records, in each worker the moment it is forked, how many objects it inherited frozen; it stays
# None where the app is imported after the fork (Gunicorn without preload).
APP = f"""
import gc
import os

from flask import Flask

from flaskprod import Production

KEPT = [[n] for n in range({KEPT})]  # long-lived objects the collector tracks, as a real app's are
FORKED = None


def _record_inherited():
    global FORKED
    FORKED = gc.get_freeze_count()


os.register_at_fork(after_in_child=_record_inherited)

app = Flask(__name__)
Production(app)


@app.get("/gc")
def frozen():
    return {{"pid": os.getpid(), "frozen": gc.get_freeze_count(), "frozen_at_fork": FORKED}}
"""


def frozen(serve_app: StartServer, *args: str) -> dict[str, int | None]:
    server = serve_app(APP, workers=2, args=("--threads", "2", *args))
    response = server.get("/gc")
    assert response.status_code == 200, response.text
    body: dict[str, int | None] = response.json()
    return body


def test_uwsgi_freezes_the_app_in_the_master_before_forking(serve_app: StartServer) -> None:
    body = frozen(serve_app, "--server", "uwsgi")
    assert body["frozen_at_fork"] is not None and body["frozen_at_fork"] >= KEPT, body
    # The worker froze nothing of its own; frozen objects the app let go of since (its first-request check) count less.
    assert body["frozen"] <= body["frozen_at_fork"], body


def test_gunicorn_with_preload_freezes_the_app_in_the_master_before_forking(serve_app: StartServer) -> None:
    body = frozen(serve_app, "--server", "gunicorn", "--set", "server.preload=true")
    assert body["frozen_at_fork"] is not None and body["frozen_at_fork"] >= KEPT, body


def test_gunicorn_without_preload_freezes_the_app_each_worker_loaded(serve_app: StartServer) -> None:
    body = frozen(serve_app, "--server", "gunicorn")
    assert body["frozen_at_fork"] is None, body  # imported after the fork
    assert body["frozen"] is not None and body["frozen"] >= KEPT, body


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
def test_gc_freeze_off_leaves_every_object_to_the_collector(serve_app: StartServer, kind: str) -> None:
    body = frozen(serve_app, "--server", kind, "--set", "server.gc_freeze=false", "--set", "server.preload=true")
    assert body["frozen"] == 0, body
