"""Gunicorn's greenlet workers (server.worker_class "gevent", "eventlet") and the packages they run on.

Each fails in Gunicorn's arbiter, with a traceback, when it cannot start: recent Gunicorn releases have no eventlet
worker ("Entry point ('gunicorn.workers', 'eventlet') not found"), and the gevent one needs gevent. `serve` says so
in one line before starting it, and `build` before writing an image whose requirements leave the package out.

psycopg2 waits for the database inside libpq, where gevent cannot switch: one query stopped every request of its
worker until it returned. Its documented hook for coroutine libraries is a wait callback, which polls the
connection and waits for its socket; flaskprod sets one that waits in gevent's loop (as psycogreen's does, unless
the app set one itself). psycopg 3 waits in gevent's loop on its own (runtime/interrupted_queries.py).
"""

from __future__ import annotations

import importlib.util
from typing import Any

# The packages that provide each loop, in the order Flask-SocketIO picks them when SocketIO() names no async_mode.
GREENLET_PACKAGES = {"eventlet": frozenset({"eventlet"}), "gevent": frozenset({"gevent", "gevent-websocket"})}
# The module of Gunicorn's worker for each.
GUNICORN_WORKERS = {"eventlet": "gunicorn.workers.geventlet", "gevent": "gunicorn.workers.ggevent"}


def missing_worker(worker_class: str) -> str | None:
    """Why Gunicorn cannot start worker_class here, and the fix; None when it can."""
    if worker_class not in GUNICORN_WORKERS:
        return None
    if importlib.util.find_spec(GUNICORN_WORKERS[worker_class]) is None:
        return (
            f"server.worker_class = {worker_class!r}: the Gunicorn installed has no {worker_class} worker (recent "
            'releases dropped it); use "gevent" or "gthread"'
        )
    if importlib.util.find_spec(worker_class) is None:  # the package is named as its loop
        return f"server.worker_class = {worker_class!r} needs {worker_class}: pip install {worker_class}"
    return None


def worker_uninstalled(worker_class: str, installed: frozenset[str] | None, where: str) -> str | None:
    """Why the image could not start worker_class: `where` (the requirements, whose canonical names are installed)
    installs none of its packages; None when it does, or cannot all be named."""
    packages = GREENLET_PACKAGES.get(worker_class)
    if packages is None or installed is None or packages & installed:
        return None
    return (
        f"server.worker_class = {worker_class!r} runs on {worker_class}, which {where} does not install: the "
        f"image's app server would not start; add {worker_class} to it"
    )


def psycopg2_waits_in_gevents_loop() -> None:
    """Give psycopg2, when installed, a wait callback that yields to gevent's loop, unless it has one already."""
    if importlib.util.find_spec("psycopg2") is None:
        return
    from psycopg2 import extensions

    if extensions.get_wait_callback() is None:
        extensions.set_wait_callback(_wait_in_gevents_loop)


def _wait_in_gevents_loop(conn: Any) -> None:
    """psycopg2's wait callback: poll the connection until it is done, waiting in gevent's loop for its socket.

    The request's deadline (gevent's Timeout) landing in a wait cancels the statement, and the wait goes on until
    the server has answered with its error, which psycopg2 then raises: raised from here instead, the deadline's
    exception would have psycopg2 close a connection its pool still holds, whose rollback then failed the request's
    teardown (the client got 500). The error pages answer that error with the deadline's 504.
    """
    from gevent.socket import wait_read, wait_write
    from psycopg2 import OperationalError, extensions

    from ..runtime.deadline import RequestTimeout, passed_in_a_wait

    cancelled = False
    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return
        if state not in (extensions.POLL_READ, extensions.POLL_WRITE):
            raise OperationalError(f"psycopg2 polled an unknown state: {state}")
        try:
            (wait_read if state == extensions.POLL_READ else wait_write)(conn.fileno())
        except RequestTimeout:
            if cancelled:
                raise
            cancelled = True
            passed_in_a_wait()
            conn.cancel()  # the server answers with an error, which ends the loop above
