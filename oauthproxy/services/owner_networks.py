"""A network per owner: the Docker services of one owner token share a bridge network of their
own, which no other owner's container joins, so a container reaches only its owner's others
(and whatever the owner put on a network OWNER_DOCKER_NETWORKS lists: those are shared).

The network is made on demand, when the owner's first service gets a container
(`oauthproxy-owner-{12 hex of a hash of the owner's token hash}`, labelled as ours and as the
owner's), and removed when the owner's last service goes (`release`, best effort: a network
that still holds a container stays). The engine allows several networks of one name, so one is
always found by name and labels, and several resolve to the oldest (`DockerEngine.ensure_network`).

The gateway reaches a service at `http://{service_name}:{port}`, a name Docker's DNS answers
only on a network the asker shares with the container. On the host it reaches containers by
their published ports (names do not resolve there). In a container (GATEWAY_CONTAINER), it joins
every owner network it needs: when it makes one, and every time its Docker events follower
(re)connects to the engine (`join_all`), so a gateway container made anew rejoins them all.
It joins only while it forwards no packets (`FORWARDING_OFF`): a container's network namespace
takes IPv4 forwarding from the host, where dockerd turns it on, and a gateway container on
every owner's network would route one owner's packets onto another's, past the isolation the
engine applies only between its bridges.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from dataclasses import dataclass

from oauthproxy.errors import GatewayError
from oauthproxy.services.docker import (
    MANAGED_LABEL,
    OWNER_LABEL,
    DockerEngine,
    EngineError,
    NetworkState,
)

log = logging.getLogger(__name__)

NETWORK_PREFIX = "oauthproxy-owner-"
FORWARDING_OFF = {"net.ipv4.ip_forward": "0"}
"""The sysctl GATEWAY_CONTAINER must be created with before it joins owner networks (compose's
`api` sets it, and net.ipv6.conf.all.forwarding too)."""
OWN_CONTAINER = "self"
"""GATEWAY_CONTAINER's value for "the container this process runs in": its hostname, which
Docker sets to the container's short ID unless told otherwise."""


def network_name(owner_hash: str) -> str:
    """The name of an owner's network: fixed by the owner, telling nothing of its token."""
    return NETWORK_PREFIX + hashlib.sha256(owner_hash.encode()).hexdigest()[:12]


def network_labels(owner_hash: str) -> dict[str, str]:
    return {MANAGED_LABEL: "true", OWNER_LABEL: owner_hash}


def gateway_container(setting: str | None) -> str | None:
    """The container the gateway runs in, as GATEWAY_CONTAINER names it (None: on the host)."""
    if not setting:
        return None
    return socket.gethostname() if setting == OWN_CONTAINER else setting


class RoutingGateway(EngineError):
    """GATEWAY_CONTAINER forwards packets: on every owner's network, it would be a router
    between them. Owners' services are refused until it is created with forwarding off."""

    def __init__(self, container: str, sysctl: str) -> None:
        super().__init__(
            f"the gateway's container ({container}, GATEWAY_CONTAINER) forwards packets between "
            f"its networks: on every owner's network it would route one owner's packets to "
            f"another's; create it with the sysctl {sysctl}=0 (compose.yaml's api service does)"
        )


@dataclass(frozen=True)
class OwnerNetworks:
    engine: DockerEngine
    gateway: str | None
    """The gateway's own container, which joins every owner network; None: it runs on the host,
    which reaches every bridge network's addresses itself."""

    async def join(self, owner_hash: str) -> str:
        """The owner's network (made if need be, the gateway attached to it): its ID."""
        network = await self.engine.ensure_network(
            network_name(owner_hash), network_labels(owner_hash)
        )
        if self.gateway is not None:
            await self._check_forwarding_off()
            await self.engine.connect(network.id, self.gateway)
        return network.id

    async def _check_forwarding_off(self) -> None:
        """`RoutingGateway` unless the gateway's container forwards no packets."""
        assert self.gateway is not None
        configured = await self.engine.sysctls(self.gateway)
        unset = [name for name, value in FORWARDING_OFF.items() if configured.get(name) != value]
        if unset:
            raise RoutingGateway(self.gateway, unset[0])

    async def release(self, owner_hash: str) -> list[str]:
        """Remove the owner's network(s), once the owner has no service left: the names of
        those removed. Best effort, never raising: one that still holds a container (other
        than the gateway's) stays, with the gateway still on it."""
        try:
            found = await self.engine.networks(network_labels(owner_hash))
        except GatewayError as error:
            log.warning("owner network left in place: %s", error)
            return []
        return [network.name for network in found if await self._remove(network)]

    async def _remove(self, network: NetworkState) -> bool:
        try:
            if self.gateway is not None:
                await self.engine.disconnect(network.id, self.gateway)
            await self.engine.remove_network(network.id)
        except GatewayError as error:
            log.info("network %s stays: %s", network.name, error)
            if self.gateway is not None:
                try:
                    await self.engine.connect(network.id, self.gateway)
                except GatewayError as again:
                    log.warning("the gateway could not rejoin %s: %s", network.name, again)
            return False
        return True

    async def join_all(self) -> None:
        """Attach the gateway's container to every owner network (nothing on the host); a
        failure is logged, never raised (the events follower that asks must go on)."""
        if self.gateway is None:
            return
        try:
            await self._check_forwarding_off()
            for network in await self.engine.networks({MANAGED_LABEL: "true"}):
                if network.name.startswith(NETWORK_PREFIX) and OWNER_LABEL in network.labels:
                    await self.engine.connect(network.id, self.gateway)
        except GatewayError as error:
            log.warning(
                "GATEWAY_CONTAINER=%s did not join every owner network: %s", self.gateway, error
            )
