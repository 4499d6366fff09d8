"""Trust exactly the configured number of proxies for X-Forwarded-* headers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def trust_proxies(wsgi_app: WSGIApplication, hops: int) -> WSGIApplication:
    """wsgi_app behind ProxyFix trusting hops proxies, or unchanged when there are none.

    With 0 hops a client could claim any address or scheme through these headers, so none is read.
    Each proxy must set (overwrite) the headers it forwards, X-Forwarded-Prefix included.
    """
    if hops <= 0:
        return wsgi_app
    return ProxyFix(wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)
