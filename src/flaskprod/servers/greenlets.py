"""Gunicorn's greenlet workers (server.worker_class "gevent", "eventlet") and the packages they run on.

Each fails in Gunicorn's arbiter, with a traceback, when it cannot start: recent Gunicorn releases have no eventlet
worker ("Entry point ('gunicorn.workers', 'eventlet') not found"), and the gevent one needs gevent. `serve` says so
in one line before starting it, and `build` before writing an image whose requirements leave the package out.
"""

from __future__ import annotations

import importlib.util

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
