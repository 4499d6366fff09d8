"""Which app server can hold an app's WebSocket routes.

A WebSocket view (flask-sock's, any Werkzeug Rule(websocket=True)) takes the client's connection over from the
server and keeps it for as long as the conversation lasts. Gunicorn hands it over (simple-websocket finds it in
the environ) and Werkzeug does; uWSGI does not, so the view fails with "Cannot obtain socket from WSGI
environment". Gunicorn's sync worker hands it over, but then holds a whole process for each connection and,
hearing nothing from it, kills it at the worker timeout. So server.kind = "auto" picks Gunicorn for such an app,
and the other two are refused before anything starts.

Flask-SocketIO's clients poll before they upgrade, and each poll must reach the process that holds the client's
session; Gunicorn's workers share one socket and take requests as they come, so such an app runs one worker
(server.workers = "auto" makes it 1), and more than one is refused.

Flask-SocketIO runs in an async_mode: the one SocketIO() is given, or else the first of eventlet, gevent and
threading that is installed. Measured by hand under `flaskprod up` with eventlet or gevent installed beside it,
Gunicorn's threaded worker answered no client, polling or WebSocket: their queues and sleeps wait on a loop the
threads never run. So gevent's app gets Gunicorn's gevent worker (server.worker_class = "auto"), which answered both,
and eventlet's, which no server here runs (Gunicorn has no eventlet worker now), is refused with the fix.

Each open conversation holds one of its worker's threads for as long as it lasts (the view is the conversation's
loop), so such an app's workers get server.conversation_threads more than server.threads: with the 12 of a plain
app, the thirteenth WebSocket on a worker waited until nginx answered it 504, and so did every request after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..sizing import GREENLET_CLASSES, worker_class
from ..spec import Spec
from .greenlets import GREENLET_PACKAGES

if TYPE_CHECKING:
    from .probe import AppInfo


def named(routes: Sequence[str]) -> str:
    """The first few routes, for a one-line message."""
    shown = ", ".join(routes[:3])
    return shown if len(routes) <= 3 else f"{shown} and {len(routes) - 3} more"


# Threads a worker adds for conversations where auto decides: what flask-sock's and Flask-SocketIO's docs give
# Gunicorn (--threads 100). An idle one costs no CPU, and the executor starts one only when all are busy.
AUTO_CONVERSATION_THREADS = 100


# Flask-SocketIO's async modes that Gunicorn's workers run: threading on threads (and on gevent's, patched), gevent
# on the gevent worker alone.
SOCKETIO_MODES = ("threading", "gevent")


def socketio_mode_where(info: AppInfo, installed: frozenset[str] | None) -> str | None:
    """The async_mode the app's Flask-SocketIO will run in where the packages installed are `installed` (canonical
    names, the image's requirements): the one SocketIO() was given, else the first of GREENLET_PACKAGES installed
    (gevent_uwsgi, between them, only inside uWSGI, which such an app does not get), else threading.
    None installed that can be named (a local path among them): the mode it loaded in here."""
    if info.socketio_mode is None or info.socketio_mode_set or installed is None:
        return info.socketio_mode
    return next((mode for mode, packages in GREENLET_PACKAGES.items() if packages & installed), "threading")


def socketio_mode_uninstalled(info: AppInfo, installed: frozenset[str] | None, where: str) -> str | None:
    """Why the app would fail to import where `installed` are the packages (the requirements file `where`): its
    SocketIO() names an async_mode whose package they leave out ("Invalid async_mode specified"); None when not."""
    packages = GREENLET_PACKAGES.get(info.socketio_mode_set or "")
    if packages is None or installed is None or packages & installed:
        return None
    return (
        f"the app gives SocketIO() async_mode={info.socketio_mode_set!r}, and {where} does not install "
        f"{info.socketio_mode_set}: the app fails to import in the image (Invalid async_mode specified); add "
        f"{info.socketio_mode_set} to it"
    )


def for_conversations(spec: Spec, paths: Sequence[str], *, socketio: str | None) -> Spec:
    """spec with what auto leaves to flaskprod made concrete for an app with WebSocket routes at paths: threads for
    its conversations (server.conversation_threads), and for Flask-SocketIO (socketio: its async_mode) one worker
    (held_by_one_worker) of the gevent class when it runs on gevent."""
    spec = held_by_one_worker(spec, socketio)
    if socketio == "gevent" and spec.server.worker_class == "auto":
        spec = spec.replace(**{"server.worker_class": "gevent"})
    if paths and spec.server.conversation_threads == "auto" and worker_class(spec) not in GREENLET_CLASSES:
        spec = spec.replace(**{"server.conversation_threads": AUTO_CONVERSATION_THREADS})
    return spec


def held_by_one_worker(spec: Spec, socketio: str | None) -> Spec:
    """spec with server.workers "auto" made 1 for a Flask-SocketIO app, whose sessions live in one process."""
    if socketio and spec.server.workers == "auto":
        return spec.replace(**{"server.workers": 1})
    return spec


def on_one_replica(spec: Spec, socketio: str | None) -> Spec:
    """spec with deploy.replicas and deploy.max_replicas left at their defaults made 1 for a Flask-SocketIO app: each
    container is a process of its own, and the load balancers in front spread a client's requests over them."""
    if not socketio:
        return spec
    left = [key for key in ("deploy.replicas", "deploy.max_replicas") if spec.origins.get(key, "default") == "default"]
    return spec.replace(**dict.fromkeys(left, 1))


def replicas_problem(spec: Spec, socketio: str | None) -> str | None:
    """Why a Flask-SocketIO app cannot run as that many containers, and the fix; None when it can."""
    many = [f"{key} = {spec.get(key)}" for key in ("deploy.replicas", "deploy.max_replicas") if spec.get(key) > 1]
    if not socketio or not many:
        return None
    return (
        f"the app uses Flask-SocketIO, which keeps each client's session in the process that opened it, and "
        f"{' and '.join(many)} {'spreads' if len(many) == 1 else 'spread'} a client's requests over that many "
        "containers: those another one gets fail "
        "with 400 (Invalid session); set 1, or give SocketIO a message_queue and the load balancer sticky "
        "sessions, which flaskprod's files do not"
    )


def websocket_problem(spec: Spec, paths: Sequence[str], *, socketio: str | None = None) -> str | None:
    """Why spec's app server cannot hold the WebSocket conversations at paths, and the fix; None when it can, or
    there are none. socketio: Flask-SocketIO's async_mode, when it holds them, keeping each client's session in the
    process that opened it. server.kind must be concrete (resolve_kind's)."""
    if not paths:
        return None
    if spec.server.kind == "uwsgi":
        return (
            f"the app has WebSocket routes ({named(paths)}), which uWSGI cannot hand the client's connection: "
            'serve it with Gunicorn (server.kind = "gunicorn", or --server gunicorn)'
        )
    if socketio and socketio not in SOCKETIO_MODES:
        return (
            f"the app's Flask-SocketIO runs on {socketio} (async_mode {socketio!r}, which SocketIO() picks when "
            f"{socketio} is installed), whose own server flaskprod does not run (Gunicorn has no {socketio} worker): "
            "under Gunicorn's threads no client gets a reply; pass async_mode='threading' to SocketIO(), or "
            f"uninstall {socketio} (and leave it out of the requirements)"
        )
    if socketio == "gevent" and worker_class(spec) != "gevent":
        return (
            "the app's Flask-SocketIO runs on gevent (async_mode 'gevent', which SocketIO() picks when gevent is "
            f"installed), and Gunicorn's {worker_class(spec)} worker does not run gevent's loop: no client gets a "
            'reply; leave server.worker_class at "auto" (it picks "gevent" for such an app) or set "gevent", or pass '
            "async_mode='threading' to SocketIO()"
        )
    if worker_class(spec) == "sync":
        return (
            f"the app has WebSocket routes ({named(paths)}), and Gunicorn's sync worker would hold a whole process "
            "for each and kill it at the worker timeout: give workers threads (server.threads above 1, or "
            '--threads 12) or server.worker_class = "gevent"'
        )
    if socketio and spec.server.workers != 1:
        return (
            "the app uses Flask-SocketIO, which keeps each client's session in the worker process that opened it, "
            "and Gunicorn spreads a client's requests over every worker: those another one gets fail with 400 "
            "(Invalid session); run one worker, whose threads hold the conversations (server.workers = 1, or "
            "--workers 1)"
        )
    return None
