"""Which app server can hold an app's WebSocket routes.

A WebSocket view (flask-sock's, any Werkzeug Rule(websocket=True)) takes the client's connection over from the
server and keeps it for as long as the conversation lasts. Gunicorn hands it over (simple-websocket finds it in
the environ) and Werkzeug does; uWSGI does not, so the view fails with "Cannot obtain socket from WSGI
environment". Gunicorn's sync worker hands it over, but then holds a whole process for each connection and,
hearing nothing from it, kills it at the worker timeout. So server.kind = "auto" picks Gunicorn for such an app,
and the other two are refused before anything starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..sizing import worker_class
from ..spec import Spec


def named(routes: Sequence[str]) -> str:
    """The first few routes, for a one-line message."""
    shown = ", ".join(routes[:3])
    return shown if len(routes) <= 3 else f"{shown} and {len(routes) - 3} more"


def websocket_problem(spec: Spec, routes: Sequence[str]) -> str | None:
    """Why spec's app server cannot hold the WebSocket routes, and the fix; None when it can, or there are none.
    server.kind must be concrete (resolve_kind's)."""
    if not routes:
        return None
    if spec.server.kind == "uwsgi":
        return (
            f"the app has WebSocket routes ({named(routes)}), which uWSGI cannot hand the client's connection: "
            'serve it with Gunicorn (server.kind = "gunicorn", or --server gunicorn)'
        )
    if worker_class(spec) == "sync":
        return (
            f"the app has WebSocket routes ({named(routes)}), and Gunicorn's sync worker would hold a whole process "
            "for each and kill it at the worker timeout: give workers threads (server.threads above 1, or "
            '--threads 12) or server.worker_class = "gevent"'
        )
    return None
