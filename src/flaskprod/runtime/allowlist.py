"""Who may read what the app tells its operators (metrics, why a readiness check failed): the addresses of
monitoring.metrics_allow, the list nginx guards the metrics path with."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Allowlist:
    """monitoring.metrics_allow, parsed once: None (unset) or "all" lets anyone in."""

    def __init__(self, allowed: str | None) -> None:
        self.everyone = allowed is None or allowed == "all"
        listed = "" if allowed is None or self.everyone else allowed
        self._networks: tuple[Network, ...] = tuple(ipaddress.ip_network(item, strict=False) for item in listed.split())

    def admits(self, environ: WSGIEnvironment) -> bool:
        """Whether the request's REMOTE_ADDR (the client's, once ProxyFix trusted the proxy in front) is listed.

        A peer with no address (a unix socket) is not: it is a proxy on this machine passing on someone else's
        request, which only proxy.trusted_hops lets the app see through."""
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(environ.get("REMOTE_ADDR") or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket
        return any(address in network for network in self._networks)
