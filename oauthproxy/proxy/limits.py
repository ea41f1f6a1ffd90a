"""How many connections one client may hold open across the public listeners.

A slowloris holds connections open by sending its heads slowly; each one costs the gateway a
socket and a task until FIRST_REQUEST_TIMEOUT. Counting open connections per client bounds what
one client can hold, so a flood from one address cannot stop another client from being served.

The key is the real client: the peer's address, or behind the PROXY protocol the client the
balancer names. An IPv6 client counts by its /64 (one host usually holds a whole /64). Peers in
TRUSTED_PROXIES are never counted: their connections carry many clients (the PROXY protocol port
counts the clients it names instead).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

Release = Callable[[], None]
IPV6_CLIENT_PREFIX = 64


def client_key(ip: str) -> str:
    """The address a connection counts against: IPv4 as it is, IPv6 by its /64."""
    if ":" not in ip:
        return ip  # IPv4, or no address at all: as it is, without parsing it
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return ip


def _nothing() -> None:
    return None


class ConnectionLimit:
    """Open connections per client key; `per_ip` 0 counts nothing."""

    def __init__(self, per_ip: int) -> None:
        self.per_ip = per_ip
        self._open: dict[str, int] = {}
        self._full: set[str] = set()
        """Keys refused since they were last below their share (each is logged once)."""

    def admit(self, ip: str) -> Release | None:
        """What to call once the connection closes, or None: `ip` holds its share already."""
        if not self.per_ip:
            return _nothing
        key = client_key(ip)
        held = self._open.get(key, 0)
        if held >= self.per_ip:
            if key not in self._full:
                self._full.add(key)
                log.warning("%s holds %d connections; closing any more", key, held)
            return None
        self._open[key] = held + 1
        return lambda: self._release(key)

    def _release(self, key: str) -> None:
        self._full.discard(key)
        left = self._open[key] - 1
        if left:
            self._open[key] = left
        else:
            del self._open[key]
