"""Who sent a request to the authorization server, for per-client limits. Pure.

The admin API (and with it the authorization server) listens on loopback. Public clients reach it
through the gateway's own data plane, which forwards API hostnames and the OAuth routes over
loopback with an `X-Forwarded-For` it built itself: the address it saw, appended to the chain of a
peer in TRUSTED_PROXIES, and replacing whatever any other client sent. So the chain is believed
only from a loopback peer (this gateway) or a peer in TRUSTED_PROXIES, and read from the right:
the first address that no trusted proxy speaks for is the client. Any other peer is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from oauthproxy.proxy.headers import Network, is_trusted


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_loopback(value: str) -> bool:
    return _is_address(value) and ipaddress.ip_address(value).is_loopback


def client_address(peer: str, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """The client's address: `peer`, or (when `peer` forwards for others) the rightmost address
    of the X-Forwarded-For values that is not a trusted proxy. An entry that is no address ends
    the walk: the last address before it stands."""
    if not (_is_loopback(peer) or is_trusted(peer, trusted)):
        return peer
    chain = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    address = peer
    for hop in reversed(chain):
        if not _is_address(hop):
            break
        address = hop
        if not is_trusted(hop, trusted):
            break
    return address
