"""An app that mounts itself under a URL prefix (Flask's APPLICATION_ROOT recipe:
`app.wsgi_app = DispatcherMiddleware(NotFound(), {"/shop": app.wsgi_app})`).

Its routes are then reached under the prefix, Production(app)'s probes and metrics too, while nginx, Kubernetes,
Prometheus and `up` ask for them where the spec puts them (/readyz): they got the dispatcher's 404, and `up` waited
for a readiness that never came. A server flaskprod starts answers the probe paths at the root as well, by passing
them on under the prefix, so they run through every layer the app put around itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from flask import Flask

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# Where middleware keeps the app it wraps: Werkzeug's (ProxyFix, SharedDataMiddleware, DispatcherMiddleware's
# default), Production's pipeline, and the common third-party shapes.
_INNER = ("app", "wsgi_app", "application", "_app")
_DEPTH = 16  # middleware deeper than this is no chain a user wrote


def _inner(node: object) -> Iterator[tuple[str, object]]:
    """Each (prefix, app) node passes requests on to: wrapped apps (a dispatcher's default) under none, first, then
    a dispatcher's mounts under their prefixes."""
    for name in _INNER:
        try:
            value = getattr(node, name, None)
        except Exception:  # a proxy object (Werkzeug's LocalProxy) outside its context: no middleware
            continue
        if callable(value) and value is not node:
            yield "", value
    mounts = getattr(node, "mounts", None)
    if isinstance(mounts, dict):
        for prefix, mounted in mounts.items():
            if isinstance(prefix, str):
                yield prefix.rstrip("/"), mounted


def _is_flask_core(node: object, app: Flask) -> bool:
    """node is app's own Flask.wsgi_app, bound to it: where its routes are matched."""
    return getattr(node, "__self__", None) is app and getattr(node, "__func__", None) is Flask.wsgi_app


def mount_prefixes(app: Flask) -> tuple[str, ...]:
    """Every URL prefix under which app.wsgi_app passes requests on to the app's own routes, nearest first: ""
    for the root. None when no path to them can be seen (middleware that keeps its app under another name)."""
    found: list[str] = []
    seen: set[tuple[int, str]] = set()
    queue: deque[tuple[object, str, int]] = deque([(app.wsgi_app, "", 0)])
    while queue:  # breadth first: the root, when the app is reached there, comes before the prefixes
        node, prefix, depth = queue.popleft()
        if _is_flask_core(node, app):
            found.append(prefix)
            continue
        if (id(node), prefix) in seen or depth >= _DEPTH:
            continue
        seen.add((id(node), prefix))
        queue.extend((inner, prefix + more, depth + 1) for more, inner in _inner(node))
    return tuple(dict.fromkeys(found))


def mount_prefix(app: Flask) -> str:
    """The prefix the app's own routes are reached under: "" at the root (or when none can be seen), else the
    nearest of mount_prefixes."""
    return served_under(mount_prefixes(app))


def served_under(prefixes: tuple[str, ...]) -> str:
    """The prefix of mount_prefixes an app is served under: "" when it is reached at the root or none was seen."""
    return "" if not prefixes or "" in prefixes else prefixes[0]


class ProbesUnderPrefix:
    """Passes a request for one of paths on under prefix, where the mounted app answers it."""

    def __init__(self, wsgi_app: WSGIApplication, prefix: str, paths: frozenset[str]) -> None:
        self.wsgi_app = wsgi_app
        self.prefix = prefix
        self.paths = paths

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in self.paths:
            environ["PATH_INFO"] = self.prefix + path
        return self.wsgi_app(environ, start_response)


def probes_at_root(app: Flask) -> str:
    """Answer Production(app)'s probe paths at the root of an app mounted under a prefix as well; the prefix
    ("" when not mounted)."""
    from .extension import installed_on

    installed = installed_on(app)
    paths = installed.probe_paths if installed is not None else frozenset()
    prefix = mount_prefix(app)
    if prefix and paths and not isinstance(app.wsgi_app, ProbesUnderPrefix):
        wrapped: Any = ProbesUnderPrefix(app.wsgi_app, prefix, paths)
        app.wsgi_app = wrapped  # type: ignore[method-assign]
    return prefix
