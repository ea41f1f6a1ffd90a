"""Who may use a service's host port. Pure: the caller and the allocation in, a decision out.

A host port a service publishes belongs to the service's owner. Traffic reaches it through the
gateway only by a proxy, route or external service whose target names the port on this host
(`127.0.0.1:11000`, `localhost:11000`, or any address of this host for a port bound to
`0.0.0.0`). Such a target is the owner's to create, and the admin's; another owner token may
create it only when the port's `source_token` is that token (the owner grants one other token
the use of one port). A port without a source token, or with `require_token` false, is its
owner's alone. The grant also lets the token see the port in `GET /services/ports`; releasing
or changing the port stays with the owner, through its service.

The token is stored only as its SHA-256, the form API tokens are stored in, so the check compares
two hashes, in constant time.
"""

from __future__ import annotations

import hmac
from enum import StrEnum

from oauthproxy.models.services import PortAllocation
from oauthproxy.tenancy.caller import Caller, Refused
from oauthproxy.tenancy.targets import Destination


class PortAccess(StrEnum):
    OWNER = "owner"
    """The admin, or the owner of the port's service."""
    GRANTED = "granted"
    """The port's source token is the caller's token."""
    DENIED = "denied"


def port_access(caller: Caller, port: PortAllocation) -> PortAccess:
    """How (and whether) the caller may use `port`."""
    if caller.owns(port.owner_token_hash):
        return PortAccess.OWNER
    granted = port.source_token_hash
    if port.require_token and granted and hmac.compare_digest(granted, caller.token_hash):
        return PortAccess.GRANTED
    return PortAccess.DENIED


def usable(caller: Caller, ports: list[PortAllocation]) -> list[PortAllocation]:
    """The ports the caller may list: its own, and those granted to it."""
    return [port for port in ports if port_access(caller, port) is not PortAccess.DENIED]


def shown_to(caller: Caller, port: PortAllocation) -> PortAllocation:
    """`port` as the caller may see it: a token the port is granted to learns its number and
    service, never its owner's token hash or the grant's own hash."""
    if port_access(caller, port) is PortAccess.OWNER:
        return port
    return port.model_copy(update={"owner_token_hash": None, "source_token_hash": None})


def check_port_target(caller: Caller, destination: Destination, holder: PortAllocation) -> None:
    """Refuse (403 `target_not_allowed`) a target on this host's port `holder` holds, unless
    the caller may use that port. The refusal does not name the service or its owner."""
    if port_access(caller, holder) is PortAccess.DENIED:
        raise Refused(
            403,
            "target_not_allowed",
            f"{destination.field}: {destination.host}:{destination.port} may not be targeted: "
            f"port {destination.port} of this host is published by a service this token does "
            "not own; its owner can grant it with the port's source_token",
            field=destination.field,
        )
