"""Following the Docker engine: a service whose container dies or is removed behind the
gateway's back is marked down, so its proxies and routes answer 503 at once.

Events are triggers, the engine is the truth (as Redis is for the supervisor): on each event of
one of our containers the follower asks the engine for that container's state and records it
(`DockerServiceRepository.set_status`, which queues `services_changed` only on a change). Every
time it (re)connects it first records the state of every service, so events missed while the
engine or Redis was away cannot leave a status stale, and attaches the gateway's own container
(GATEWAY_CONTAINER) to every owner network, so a gateway container made anew reaches them. The
stream is read in bounded windows, each a short-lived `docker events` call in a worker thread
(`DockerEngine.follow_events`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import trio

from oauthproxy.errors import NotFound, StorageUnavailable
from oauthproxy.retrying import Backoff
from oauthproxy.services.docker import (
    SERVICE_LABEL,
    DockerEngine,
    EngineError,
    EngineEvent,
    EngineUnavailable,
)
from oauthproxy.services.owner_networks import OwnerNetworks
from oauthproxy.storage import Storage

log = logging.getLogger(__name__)

WINDOW_SECONDS = 5.0
"""How long one `docker events` call follows the stream before the next one takes over."""
OVERLAP = timedelta(seconds=0.5)
"""Windows overlap a little, so no event falls between two; a repeated event changes nothing."""
REMOVED = "removed"


async def serve_docker_events(
    engine: DockerEngine,
    storage: Storage,
    shutdown: trio.Event,
    *,
    gateway: str | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Follow the engine until `shutdown` is set (it has nothing to drain, so it stops at once);
    started at once (the gateway never waits for an engine), retrying with backoff while the
    engine or Redis is away. `gateway`: the gateway's own container (GATEWAY_CONTAINER), which
    joins every owner network each time the follower (re)connects."""
    task_status.started()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_follow, engine, storage, OwnerNetworks(engine, gateway))
        await shutdown.wait()
        nursery.cancel_scope.cancel()


async def _follow(engine: DockerEngine, storage: Storage, networks: OwnerNetworks) -> None:
    backoff = Backoff(first=1.0, limit=60.0)
    unavailable_logged = False
    while True:
        since = datetime.now(UTC)
        try:
            await record_all(engine, storage)
            await networks.join_all()
            unavailable_logged = False
            backoff.reset()
            while True:
                until = datetime.now(UTC) + timedelta(seconds=WINDOW_SECONDS)
                await _follow_window(engine, storage, since, until)
                since = until - OVERLAP
        except (EngineUnavailable, EngineError, StorageUnavailable) as error:
            if not unavailable_logged:
                log.info("not following Docker events for now: %s", error)
                unavailable_logged = True
            await backoff.wait()


async def record_all(engine: DockerEngine, storage: Storage) -> None:
    """Record every service's container status as the engine reports it now."""
    states = {state.name: state.status for state in await engine.managed()}
    for service in await storage.docker_services.all():
        await storage.docker_services.set_status(
            service.service_name, states.get(service.service_name, REMOVED)
        )


async def record_one(engine: DockerEngine, storage: Storage, name: str) -> str:
    """Record one service's container status as the engine reports it now; returns it."""
    try:
        status = (await engine.state(name)).status
    except NotFound:
        status = REMOVED
    await storage.docker_services.set_status(name, status)
    return status


async def _follow_window(
    engine: DockerEngine, storage: Storage, since: datetime, until: datetime
) -> None:
    """Record the state of each container an event names, in order, as the events come (the
    worker thread reading the stream waits for each to be recorded)."""

    def deliver(event: EngineEvent) -> None:
        name = event.labels.get(SERVICE_LABEL) or event.container
        if name:
            trio.from_thread.run(record_one, engine, storage, name)

    await engine.follow_events(since, until, deliver)
