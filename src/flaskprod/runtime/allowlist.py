"""Who may read what the app tells its operators (metrics, why a readiness check failed): the addresses of
monitoring.metrics_allow, the list nginx guards the metrics path with."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from .proxy import ORIGINAL_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Allowlist:
    """monitoring.metrics_allow, parsed once: None (unset) or "all" lets anyone in."""

    def __init__(self, allowed: str | None, *, peer_too: bool = False) -> None:
        self.everyone = allowed is None or allowed == "all"
        listed = "" if allowed is None or self.everyone else allowed
        self._networks: tuple[Network, ...] = tuple(ipaddress.ip_network(item, strict=False) for item in listed.split())
        # proxy.trusted_hops = 0: no proxy is trusted to name the client, so a ProxyFix of the app's own must not
        # let one in on the X-Forwarded-For it sent (straight to the app, or through a proxy that passes it on).
        self._peer_too = peer_too

    def admits(self, environ: WSGIEnvironment) -> bool:
        """Whether the request's REMOTE_ADDR (the client's, once ProxyFix trusted the proxy in front) is listed;
        with peer_too, the address the connection came from (before a ProxyFix rewrote it) as well.

        A peer with no address (a unix socket) is not: it is a proxy on this machine passing on someone else's
        request, which only proxy.trusted_hops lets the app see through."""
        if self.everyone:
            return True
        if not self._lists(environ.get("REMOTE_ADDR")):
            return False
        original = environ.get(ORIGINAL_KEY) if self._peer_too else None
        return original is None or self._lists(original.get("REMOTE_ADDR"))

    def _lists(self, remote_addr: str | None) -> bool:
        try:
            address = ipaddress.ip_address(remote_addr or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket
        return any(address in network for network in self._networks)
