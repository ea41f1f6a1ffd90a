"""Who may reach the gateway's own hostnames (the admin API on `localhost`) through the public
ports: a pure decision over the connection's client and the request's headers.

The admin API listens on loopback; `API_HOSTNAMES` also reach it through the public HTTP(S) port,
for clients on the gateway's own machine. "On this machine" means the real client: the peer, or
behind the PROXY protocol the client the balancer names (a header that names none, UNKNOWN or
LOCAL, is never loopback: it is meant for the balancer's health checks). A peer in
TRUSTED_PROXIES on loopback (a local nginx, say) forwards for others and names them in
X-Forwarded-For or X-Real-IP: every address it names must be loopback too, and a `Forwarded`
header from it (which we do not parse) is refused. Any other peer's forwarding headers are its
own claims, believed nowhere in the gateway, so they change nothing here either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from oauthproxy.proxy.headers import Client

Admits = Callable[[Client, Iterable[tuple[bytes, bytes]]], bool]
"""Whether a request from `client` with these headers may be served (else: an unknown host)."""


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4 loopback written as an IPv4-mapped IPv6 address."""
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped.is_loopback
    return parsed.is_loopback


def from_loopback(client: Client, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """The request comes from this machine, and a trusted proxy names no client elsewhere.
    A PROXY protocol connection whose header names no client is from no known machine."""
    if client.unnamed or not is_loopback(client.ip):
        return False
    if not client.trusted:
        return True
    for name, value in headers:
        if name == b"forwarded":
            return False
        if name in (b"x-forwarded-for", b"x-real-ip"):
            hops = value.decode("latin-1").split(",")
            if not all(is_loopback(hop) for hop in hops):
                return False
    return True


def nobody(_client: Client, _headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """`API_ON_PUBLIC_PORT=off`: the API hostnames stay reserved, and answer no one."""
    return False
