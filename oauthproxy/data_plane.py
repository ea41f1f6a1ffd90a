"""The data plane: every proxy's instance (the supervisor) and the public listeners.

`serve` starts it in its own process with WORKERS=1 (`start_single_process`, which also sweeps
what the workers of an earlier run with more left in Redis); with more, each worker process
starts it (`oauthproxy.workers`) and the parent starts the worker pool in its place. Either way
it is started in a services nursery with a `Plane`: what the rest of the gateway gives it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import trio
from pydantic import AnyHttpUrl

from oauthproxy.api.state import ListenerPorts
from oauthproxy.condition import GatewayCondition
from oauthproxy.listeners import PublicListeners
from oauthproxy.logs.logger import RequestLogger
from oauthproxy.metrics import Served
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.proxy.challenges import bounded
from oauthproxy.proxy.config import PublicPorts
from oauthproxy.proxy.dispatcher import Front, serve_http, serve_https, serve_proxy_protocol
from oauthproxy.proxy.headers import parse_networks
from oauthproxy.proxy.http2.limits import Http2Limits
from oauthproxy.proxy.limits import ConnectionLimit
from oauthproxy.proxy.waiting import FirstRequests
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from oauthproxy.storage.replica_traces import ReplicaTraces
from oauthproxy.supervisor.continuity import Continuity
from oauthproxy.supervisor.reconciler import Reconciler
from oauthproxy.supervisor.supervisor import serve_supervisor
from oauthproxy.workers.leftovers import Sweeper


@dataclass(frozen=True)
class Plane:
    """What the data plane is started with, in the services nursery of `serve` (or of a
    worker process)."""

    services: trio.Nursery
    settings: Settings
    storage: Storage
    redis_url: str
    replica: str
    ports: ListenerPorts
    continuity: Continuity
    api_url: str
    shutdown: trio.Event
    requests: RequestLogger
    condition: GatewayCondition


DataPlane = Callable[[Plane], Awaitable[Mapping[str, Served]]]
"""Starts the data plane in `plane.services`; returns the hostname → instance table it serves
(empty when worker processes serve)."""


async def start_data_plane(plane: Plane, listeners: PublicListeners) -> Mapping[str, Served]:
    """The supervisor (every proxy's instance) and the public listeners, in this process."""
    first_requests = FirstRequests()  # the listeners' and the instances' drain
    supervisor: Reconciler = await plane.services.start(
        functools.partial(
            serve_supervisor,
            plane.settings,
            plane.storage,
            plane.replica,
            PublicPorts(http=plane.ports.http, https=plane.ports.https),
            plane.continuity,
            api_targets(plane.settings, plane.api_url),
            plane.shutdown,
            requests=plane.requests,
            settled=first_requests.settled,
        )
    )
    await _start_listeners(
        plane.services,
        plane.settings,
        plane.storage,
        supervisor,
        listeners,
        plane.shutdown,
        first_requests,
        plane.requests,
    )
    return supervisor.instances


async def start_single_process(plane: Plane, listeners: PublicListeners) -> Mapping[str, Served]:
    """WORKERS=1: the data plane in this process, and the sweep that removes the workflow
    groups of the worker processes an earlier run with WORKERS > 1 left (`workers.leftovers`:
    at start-up and every minute, only groups nobody reads from)."""
    sweeper = Sweeper(ReplicaTraces(plane.storage.redis), plane.replica, workers=1)
    plane.services.start_soon(_sweep_until, sweeper, plane.shutdown)
    return await start_data_plane(plane, listeners)


async def _sweep_until(sweeper: Sweeper, shutdown: trio.Event) -> None:
    """Sweep until the gateway shuts down: the services nursery waits for its tasks (up to the
    grace period), and a sweep has nothing to finish."""
    async with trio.open_nursery() as sweeping:
        sweeping.start_soon(sweeper.run)
        await shutdown.wait()
        sweeping.cancel_scope.cancel()


async def _start_listeners(
    services: trio.Nursery,
    settings: Settings,
    storage: Storage,
    supervisor: Reconciler,
    bound: PublicListeners,
    shutdown: trio.Event,
    first_requests: FirstRequests,
    requests: RequestLogger | None = None,
) -> None:
    """Start accepting on the public listeners bound at start-up."""
    front = Front(
        host=settings.server_host,
        instances=supervisor.instances,
        unserved=supervisor.unserved,
        challenges=bounded(storage.challenges.get, settings.api_redis_timeout),
        trusted=parse_networks(settings.trusted_proxies),
        shutdown=shutdown,
        limit=ConnectionLimit(settings.proxy_max_connections_per_ip),
        send_timeout=settings.proxy_send_timeout,
        first_request_timeout=settings.proxy_first_request_timeout,
        first_requests=first_requests,
        requests=requests,
        http2=Http2Limits(
            idle_timeout=settings.proxy_idle_timeout, send_timeout=settings.proxy_send_timeout
        )
        if settings.http2_enabled
        else None,
    )
    await services.start(serve_http, front, bound.http)
    await services.start(serve_https, front, bound.https)
    await services.start(serve_proxy_protocol, front, bound.proxy_protocol)


def api_targets(settings: Settings, api_url: str) -> list[ProxyTarget]:
    """The API hostnames (`localhost`, ...) reach the admin API through the public port."""
    return [
        ProxyTarget(hostname=hostname, target_url=AnyHttpUrl(api_url), preserve_host_header=True)
        for hostname in settings.api_hostnames
    ]
