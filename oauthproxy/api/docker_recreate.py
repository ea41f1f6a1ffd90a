"""Replacing a service's container: Docker cannot change a container's image, environment,
command, labels or published ports in place, so a change to any of them is a new container
made from the service as it is now, running again if the old one ran.

Every replacement runs under the service's lock (`ownership.service_serialized`), so two
requests never replace the same container at once. A port change is one step from the user's
view (`with_ports_republished`): the port records change (atomically, outside the lock, so
concurrent allocations stay concurrent), then the container is replaced to publish them; when
the replacement fails, the port change is undone and the container made again as it was, and
the request fails with the engine's reason.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from oauthproxy.api.docker_create import container_spec, engine, owner_network_of
from oauthproxy.api.ownership import service_serialized, storage
from oauthproxy.errors import GatewayError, NotFound
from oauthproxy.models.services import DockerService
from oauthproxy.services.events import record_one

log = logging.getLogger(__name__)

T = TypeVar("T")

UNDO_TIMEOUT_SECONDS = 60.0
HOST_NETWORK = "host"


async def recreate(
    service: DockerService, *, running: bool | None = None, previous: DockerService | None = None
) -> None:
    """Replace the service's container with one made from `service` and every port it holds
    now: the old one is stopped (if it ran) and removed, the new one created, and started when
    `running` (default: when the old one ran). The image is checked first, so a bad one leaves
    the old container as it was. A service without a container gets one. When the new one
    cannot be made and the old one was removed, it is made again from `previous` (the service
    as it was), running if it ran, and the request fails with the engine's reason."""
    docker = engine()
    name = service.service_name
    await docker.exposed_ports(service.image or "")
    network = await owner_network_of(service)
    status = await _status(name)
    ports = await storage().ports.of_service(name)
    if status == "running":
        await docker.stop(name)
    await docker.remove(name)
    try:
        await docker.create(container_spec(service, ports, owner_network=network))
    except BaseException:
        if previous is not None and status is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(UNDO_TIMEOUT_SECONDS):
                await _restore(previous, running=status == "running")
        raise
    if running if running is not None else status == "running":
        await docker.start(name)
    await record_one(docker, storage(), name)


async def with_ports_republished(
    service: DockerService,
    change: Callable[[], Awaitable[T]],
    undo: Callable[[T], Awaitable[None]],
) -> tuple[T, bool]:
    """Apply `change` to the service's port records, then (under the service's lock) replace
    its container so the engine publishes them; the result and whether the container publishes
    the change. Concurrent changes coalesce: a replacement publishes every port held at that
    moment, so a request that finds its change already published replaces nothing. A container
    on the host network publishes nothing (its ports are the host's) and a service without a
    container gets its ports when one is made: neither is replaced. When the replacement fails
    (or the lock is not had in time), `undo` puts the records back, the container is made again
    from them, running if it ran, and the request fails with the reason."""
    outcome = await change()
    if HOST_NETWORK in service.networks:
        return outcome, False
    undone = False

    async def undo_once() -> None:
        nonlocal undone
        if undone:
            return
        undone = True
        try:
            await undo(outcome)
        except GatewayError as error:
            log.warning("service %s: its port change stays: %s", service.service_name, error)

    try:
        async with service_serialized(service.service_name):
            return outcome, await _publish(service, undo_once)
    except BaseException:
        with trio.CancelScope(shield=True), trio.move_on_after(UNDO_TIMEOUT_SECONDS):
            await undo_once()
        raise


async def _publish(service: DockerService, undo: Callable[[], Awaitable[None]]) -> bool:
    name = service.service_name
    try:
        state = await engine().state(name)
    except NotFound:
        return False
    wanted = container_spec(service, await storage().ports.of_service(name)).ports
    if state.published == frozenset(wanted):
        return True
    try:
        await recreate(service)
    except BaseException:
        with trio.CancelScope(shield=True), trio.move_on_after(UNDO_TIMEOUT_SECONDS):
            await undo()
            await _restore(service, running=state.status == "running")
        raise
    return True


async def _status(name: str) -> str | None:
    """The container's status, None when there is none."""
    try:
        return (await engine().state(name)).status
    except NotFound:
        return None


async def _restore(service: DockerService, *, running: bool) -> None:
    """Make the container again from the records as they were; when even that fails, the
    service shows `missing` until it is changed again (logged, never raised over the first
    failure)."""
    try:
        await recreate(service, running=running)
    except GatewayError as error:
        name = service.service_name
        log.warning("service %s: its container could not be restored: %s", name, error)
