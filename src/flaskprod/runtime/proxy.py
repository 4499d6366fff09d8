"""Trust exactly the configured number of proxies for X-Forwarded-* headers."""

from __future__ import annotations

import contextlib
import os
from types import MethodType
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.http import parse_list_header
from werkzeug.middleware.proxy_fix import ProxyFix

from ..spec import STARTUP_TOLD_ENV

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def forwarded_values(value: str) -> list[str]:
    """werkzeug's parse_list_header, without its per-character loop when nothing is quoted.

    Proxies write addresses, schemes and hosts unquoted; a value with a quote takes werkzeug's
    parser. The split keeps its rules: items stripped of spaces and tabs, empty ones dropped.
    """
    if '"' in value:
        return parse_list_header(value)
    if "," not in value:  # one proxy: no list to build
        item = value.strip(" \t")
        return [item] if item else []
    return [item for part in value.split(",") if (item := part.strip(" \t"))]


# Where ProxyFix keeps the environ's values before changing them, for apps that want the proxy's own view.
ORIGINAL_KEY = "werkzeug.proxy_fix.orig"
# The client's address as TrustedProxies read it: the access line's, written after the app ran, when a ProxyFix of
# the app's own, inside, rewrote REMOTE_ADDR with a reading of its own.
CLIENT_ADDRESS_KEY = "flaskprod.client_address"


def _real_value(value: str | None, hops: int) -> str | None:
    """The value the outermost trusted proxy saw: hops from the right, or None if fewer were added."""
    if not value:
        return None
    values = forwarded_values(value)
    return values[-hops] if len(values) >= hops else None


class TrustedProxies:
    """werkzeug's ProxyFix with the same number of trusted hops for every X-Forwarded-* header.

    The same rules and results (the tests compare the two on every header), and the same record of
    the original values, in fewer steps, as it runs on every request: on the two headers nginx
    forwards, ProxyFix took 8.4 µs a call on the benchmark machine, this 2.8 µs.
    """

    def __init__(self, app: WSGIApplication, hops: int) -> None:
        self.app = app
        self.hops = hops

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        get = environ.get
        hops = self.hops
        environ[ORIGINAL_KEY] = {
            "REMOTE_ADDR": get("REMOTE_ADDR"),
            "wsgi.url_scheme": get("wsgi.url_scheme"),
            "HTTP_HOST": get("HTTP_HOST"),
            "SERVER_NAME": get("SERVER_NAME"),
            "SERVER_PORT": get("SERVER_PORT"),
            "SCRIPT_NAME": get("SCRIPT_NAME"),
        }
        if real_for := _real_value(get("HTTP_X_FORWARDED_FOR"), hops):
            environ["REMOTE_ADDR"] = environ[CLIENT_ADDRESS_KEY] = real_for
        if proto := _real_value(get("HTTP_X_FORWARDED_PROTO"), hops):
            environ["wsgi.url_scheme"] = proto
        if host := _real_value(get("HTTP_X_FORWARDED_HOST"), hops):
            environ["HTTP_HOST"] = environ["SERVER_NAME"] = host
            if ":" in host and not host.endswith("]"):  # a port, not the end of an IPv6 address
                environ["SERVER_NAME"], environ["SERVER_PORT"] = host.rsplit(":", 1)
        if port := _real_value(get("HTTP_X_FORWARDED_PORT"), hops):
            current = get("HTTP_HOST")
            if current:
                if ":" in current and not current.endswith("]"):
                    current = current.rsplit(":", 1)[0]
                environ["HTTP_HOST"] = f"{current}:{port}"
            environ["SERVER_PORT"] = port
        if prefix := _real_value(get("HTTP_X_FORWARDED_PREFIX"), hops):
            environ["SCRIPT_NAME"] = prefix
        return self.app(environ, start_response)


def trust_proxies(wsgi_app: WSGIApplication, hops: int) -> WSGIApplication:
    """wsgi_app behind TrustedProxies trusting hops proxies, or unchanged when there are none.

    With 0 hops a client could claim any address or scheme through these headers, so none is read.
    Each proxy must set (overwrite) the headers it forwards, X-Forwarded-Prefix included.
    """
    if hops <= 0:
        return wsgi_app
    return TrustedProxies(wsgi_app, hops)


# What each ProxyFix setting reads, by the header it trusts.
_PROXY_FIX_READS = {
    "x_for": "client address",
    "x_proto": "scheme",
    "x_host": "host",
    "x_port": "port",
    "x_prefix": "path prefix",
}


# Where middleware keeps the app it wraps: werkzeug's own and most (.app), Flask's (.wsgi_app), PEP 3333's examples
# and WhiteNoise (.application), werkzeug's ProfilerMiddleware (._app).
_WRAPPED_ATTRIBUTES = ("app", "wsgi_app", "application", "_app")
# How far the chain is followed: an app's middleware is a handful of layers; a cycle or a deep graph ends here.
_MAX_DEPTH = 32


def middleware_chain(wsgi_app: object) -> Iterator[Any]:
    """wsgi_app and what it wraps, outermost first. Middleware keeps what it wraps in one of _WRAPPED_ATTRIBUTES,
    else in a closure's cell (a function middleware) or an attribute of its own name (.wrapped, .next_app), followed
    when it leads to a WSGI object known as such (_known). Run once at setup, not per request: bounded in depth, each
    object searched once."""
    searched: dict[int, bool] = {}
    seen: set[int] = set()
    node: Any = wsgi_app
    while node is not None and id(node) not in seen and len(seen) < _MAX_DEPTH:
        seen.add(id(node))
        yield node
        inner = _named_inner(node)
        if inner is None:
            inner = next((held for held in _held(node) if _leads_to_known(held, searched, _MAX_DEPTH)), None)
        node = inner


def _named_inner(node: object) -> object | None:
    """What node keeps in the first of _WRAPPED_ATTRIBUTES it sets, else None."""
    return next((inner for name in _WRAPPED_ATTRIBUTES if (inner := _attribute(node, name)) is not None), None)


def _attribute(node: object, name: str) -> object | None:
    """node.name, or None: also when reading it fails (a context-bound proxy, such as werkzeug's LocalProxy, raises
    outside its context)."""
    try:
        return getattr(node, name, None)
    except Exception:  # any object may be held: what cannot be read wraps nothing known
        return None


def _held(node: object) -> list[object]:
    """The callables node holds where middleware of no known kind keeps what it wraps: a function's closure cells and
    attributes (functools.wraps' __wrapped__), an object's own attributes. A Flask app comes last: a middleware
    holding it for its name or config is not wrapping it, and its wsgi_app leads back out to the outermost layer."""
    held: list[object] = []
    closure = _attribute(node, "__closure__")
    for cell in closure if isinstance(closure, tuple) else ():
        with contextlib.suppress(ValueError):  # a cell not yet filled
            held.append(cell.cell_contents)
    attributes = _attribute(node, "__dict__")
    if isinstance(attributes, dict):
        held.extend(attributes.values())
    wsgi = [value for value in held if callable(value) and not isinstance(value, type)]
    return sorted(wsgi, key=lambda value: issubclass(type(value), Flask))  # stable: the rest in their order


def _known(node: object) -> bool:
    """A WSGI object known as such: a ProxyFix, flaskprod's own layers, a Flask app or its wsgi_app, or middleware
    keeping what it wraps in one of _WRAPPED_ATTRIBUTES. By the type, not isinstance: a proxy object's __class__
    can raise."""
    kind = type(node)
    if issubclass(kind, (ProxyFix, TrustedProxies, PeerOriginal, Flask)):
        return True
    if kind is MethodType and issubclass(type(getattr(node, "__self__", None)), Flask):
        return True
    return _named_inner(node) is not None


def _leads_to_known(node: object, searched: dict[int, bool], depth: int) -> bool:
    """Whether node is, or holds within depth steps, a WSGI object known as such. searched keeps each object's
    answer, so none is searched twice (one on a cycle counts as leading nowhere while it is searched)."""
    if _known(node):
        return True
    if id(node) in searched or depth <= 0:
        return searched.get(id(node), False)
    searched[id(node)] = False
    searched[id(node)] = any(_leads_to_known(held, searched, depth - 1) for held in _held(node))
    return searched[id(node)]


def apps_proxy_fix(wsgi_app: object) -> ProxyFix | None:
    """The werkzeug ProxyFix an app wrapped itself in: wsgi_app, or one it wraps."""
    return next((node for node in middleware_chain(wsgi_app) if isinstance(node, ProxyFix)), None)


def inside_apps_proxy_fix(
    wsgi_app: WSGIApplication, layer: Callable[[WSGIApplication], WSGIApplication]
) -> WSGIApplication:
    """layer(wsgi_app), placed where it sees each request as the app's own ProxyFix rewrites it, when there is one.

    Outside the app's ProxyFix, a layer judged by what the proxy in front wrote: its address (a local nginx's, let
    in by the metrics allow list, whoever the client was) and its scheme (http, so no HSTS behind TLS). Right
    inside the ProxyFix when the app's outermost layer is one. Below other middleware, under a ProxyFix trusting
    the same hops, whose reading the app's repeats with the same result (each reads the headers, not the environ
    the other rewrote). The middleware between then sees the client's address and scheme, as the app does, where
    it saw the proxy's; and the app gets the proxy's in werkzeug.proxy_fix.orig, as the copy recorded them, not
    the values the copy rewrote, which its own ProxyFix recorded again.
    """
    fix = apps_proxy_fix(wsgi_app)
    if fix is None:
        return layer(wsgi_app)
    if fix is wsgi_app:
        fix.app = layer(fix.app)
        return fix
    fix.app = PeerOriginal(fix.app, restore=True)
    settings = {name: getattr(fix, name) for name in _PROXY_FIX_READS}
    return ProxyFix(PeerOriginal(layer(wsgi_app), restore=False), **settings)


# werkzeug.proxy_fix.orig as the copy of the app's ProxyFix above its middleware recorded it: the connection's own
# address and scheme, kept for the app's ProxyFix below to hand on.
PEER_ORIGINAL_KEY = "flaskprod.proxy_fix.orig"


class PeerOriginal:
    """Keeps werkzeug.proxy_fix.orig as the outer ProxyFix recorded it (restore=False), or puts it back under the
    app's own ProxyFix, which recorded the values the outer one had rewritten (restore=True)."""

    def __init__(self, app: WSGIApplication, *, restore: bool) -> None:
        self.app = app
        self.restore = restore

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.restore:
            environ[PEER_ORIGINAL_KEY] = environ.get(ORIGINAL_KEY)
        elif (peer := environ.get(PEER_ORIGINAL_KEY)) is not None:
            environ[ORIGINAL_KEY] = peer
        return self.app(environ, start_response)



def told_at_start() -> bool:
    """Whether serve's probe, which loads the app before the app server does, told the app's ProxyFix disagreement:
    the server's processes (each Gunicorn worker, uWSGI's master, again at each reload) then keep quiet, so a server
    start tells it once, not once per worker."""
    return bool(os.environ.get(STARTUP_TOLD_ENV))


def hops_disagreement(wsgi_app: WSGIApplication, hops: int) -> str | None:
    """A warning when the app's own ProxyFix trusts another number of hops than proxy.trusted_hops, else None.

    Inside the layer, each reads the X-Forwarded-* headers from the right (neither shifts what the other took), so
    behind nginx's list (the client's own X-Forwarded-For, then the address nginx saw) the app takes one value and
    the layer (its logs, the metrics allow list, readiness details, HSTS) another: with x_for=2 and 1 trusted
    hop, an address the client wrote. A setting of 0 agrees: that ProxyFix leaves the value the layer set.
    """
    fix = apps_proxy_fix(wsgi_app)
    if fix is None:
        return None
    return _disagreement(
        fix, hops, "", "the app reads another {reads} from X-Forwarded-* than flaskprod's layer does (its logs, "
        "metrics allow list, HSTS)"
    )


def hops_disagreement_outside(wsgi_app: WSGIApplication, hops: int) -> str | None:
    """hops_disagreement for a ProxyFix the app wrapped around flaskprod's layer, after Production(app): the layer,
    inside it, reads the headers again, so the app sees the layer's values, and the ProxyFix's settings go unused."""
    for node in middleware_chain(wsgi_app):  # outside in, up to flaskprod's layer
        if isinstance(node, TrustedProxies):
            return None
        if isinstance(node, ProxyFix):
            return _disagreement(
                node, hops, ", wrapped after Production(app),",
                "flaskprod's layer inside it reads X-Forwarded-* again, so the app gets flaskprod's {reads}, not "
                "its ProxyFix's",
            )
    return None


def _disagreement(fix: ProxyFix, hops: int, where: str, consequence: str) -> str | None:
    """The warning of a ProxyFix (where: how the app placed it) whose hops differ from hops, else None;
    consequence names what the app then reads ({reads}: what the differing settings read)."""
    if hops <= 0:
        return None
    differing = {name: getattr(fix, name) for name in _PROXY_FIX_READS if getattr(fix, name) not in (0, hops)}
    if not differing:
        return None
    given = ", ".join(f"{name}={value}" for name, value in differing.items())
    reads = " and ".join(_PROXY_FIX_READS[name] for name in differing)
    counts = set(differing.values())
    setting = f"proxy.trusted_hops = {counts.pop()}" if len(counts) == 1 else "proxy.trusted_hops to their number"
    return (
        f"the app's ProxyFix{where} trusts {given} but proxy.trusted_hops = {hops}: {consequence.format(reads=reads)}; "
        f"remove the app's ProxyFix, or, if that many proxies really are in front, set {setting} (FP-C008)"
    )
