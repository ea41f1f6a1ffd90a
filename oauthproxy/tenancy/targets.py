"""Where an owner token may send traffic: never to the gateway itself, never to metadata.

A proxy, route or service target that names the gateway's own listeners (admin API, HTTP, HTTPS,
PROXY protocol) would let an owner reach the admin API or loop requests through the gateway with
headers of their choosing; one that names a link-local address reaches a cloud's metadata
service. The admin may target anything (`oauth-routes-setup` points routes at the API).

The shell resolves a target's name (with a timeout) and says which of its addresses are this
host's own; this module only decides, over those facts. A name that does not resolve now is let
through: there is nothing to check yet, and DNS may change after any check (docs/security.md).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from oauthproxy.tenancy.caller import Caller, Refused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DENIED_NETWORKS = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")
"""Where cloud metadata services answer: link-local (169.254.169.254 and most clouds), AWS's
IPv6 endpoint (fd00:ec2::254) and Alibaba Cloud's (100.100.100.200), which are not."""

LOOPBACK_HOST = "127.0.0.1"
"""Where a route of target type `port` sends its requests."""


@dataclass(frozen=True)
class TargetPolicy:
    """What owner tokens may not target: these networks, and these ports on this host."""

    denied_networks: tuple[Network, ...]
    gateway_ports: frozenset[int]


@dataclass(frozen=True)
class Destination:
    """Where a target field sends traffic: host and port as written."""

    field: str
    host: str
    port: int


@dataclass(frozen=True)
class ResolvedAddress:
    address: Address
    is_local: bool
    """Assigned to this host (loopback, unspecified or one of its interfaces)."""


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDRs as networks; ValueError naming the first that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


def url_destination(field: str, url: str) -> Destination:
    """The host and port an http(s) URL connects to (the scheme's port when none is given)."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return Destination(field=field, host=parts.hostname or "", port=parts.port or default)


def port_destination(field: str, port: str) -> Destination:
    return Destination(field=field, host=LOOPBACK_HOST, port=int(port))


def literal_address(host: str) -> Address | None:
    """`host` as an IP address when it is written as one (brackets and zone stripped)."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_destination(
    caller: Caller,
    policy: TargetPolicy,
    destination: Destination,
    addresses: Iterable[ResolvedAddress],
) -> None:
    """Refuse (403 `target_not_allowed`) an owner token's target that reaches a denied network
    or one of the gateway's own listeners; the admin passes."""
    if caller.is_admin:
        return
    for resolved in addresses:
        address = _unmapped(resolved.address)
        network = next((n for n in policy.denied_networks if address in n), None)
        if network is not None:
            raise _refused(
                destination, f"{address} is in {network}, which owner tokens may not target"
            )
        if destination.port in policy.gateway_ports and on_this_host(resolved):
            raise _refused(
                destination, f"port {destination.port} on {address} is the gateway itself"
            )


def _unmapped(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (`::ffff:169.254.169.254`) as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def on_this_host(resolved: ResolvedAddress) -> bool:
    """Whether a connection to `resolved` reaches this host's own sockets."""
    address = _unmapped(resolved.address)
    return resolved.is_local or address.is_loopback or address.is_unspecified


def _refused(destination: Destination, reason: str) -> Refused:
    return Refused(
        403,
        "target_not_allowed",
        f"{destination.field}: {destination.host}:{destination.port} may not be targeted: {reason}",
        field=destination.field,
    )
