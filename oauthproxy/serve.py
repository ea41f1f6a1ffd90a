"""`serve(settings)`: the root nursery that owns every part of the gateway.

    every listener bound first (a taken port stops start-up here, before anything runs)
    root nursery
    ├─ signal watcher: the first SIGTERM/SIGINT starts a graceful shutdown, a second one ends it
    ├─ embedded Redis (a supervised child process) when REDIS_URL is unset
    └─ storage (coredis pool), then the services nursery
       ├─ admin API (hypercorn[trio] + quart-trio) on API_BIND_HOST:API_PORT; its own storage
       │  pool bounds each Redis command by API_REDIS_TIMEOUT
       ├─ Docker events follower: marks a service down when its container stops behind the
       │  gateway's back (`services/events.py`); started at once, it never waits for an engine
       ├─ supervisor: consumes events:workflow, owns one instance nursery per hostname; never
       │  applies a Redis that lost its data (`supervisor/continuity.py`)
       ├─ request logger (around the services, so their last requests are written too): a
       │  bounded buffer, written to Redis in batches (`oauthproxy.logs`)
       └─ dispatcher on HTTP_PORT: hands each connection to its hostname's instance

The supervisor and the dispatcher are the data plane (`data_plane.py`). With WORKERS above 1 the
worker pool (`oauthproxy.workers`) takes their place: each worker process runs them on the
public ports, which this process only claims.

`/health` answers 503 (`starting`) until the public listeners accept and every proxy runs.

Shutdown runs in dependency order: the services drain (bounded by SHUTDOWN_GRACE_SECONDS), then
the storage pool closes, then the embedded Redis stops and flushes its data.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from oauthproxy.admin_token import AdminToken, ensure_admin_token
from oauthproxy.api.app import create_app
from oauthproxy.api.state import ListenerPorts
from oauthproxy.certificates.manager import CertificateManager, serve_certificate_manager
from oauthproxy.condition import GatewayCondition
from oauthproxy.data_plane import DataPlane, Plane, start_single_process
from oauthproxy.listeners import BoundListeners, bind_listeners
from oauthproxy.logs.logger import RequestLogger, request_logging
from oauthproxy.services.docker import DockerEngine
from oauthproxy.services.events import serve_docker_events
from oauthproxy.services.owner_networks import gateway_container
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, open_storage
from oauthproxy.storage.embedded import EmbeddedRedis, serve_embedded_redis
from oauthproxy.storage.epoch import EpochRepository
from oauthproxy.supervisor.continuity import Continuity
from oauthproxy.workers.pool import start_workers

log = logging.getLogger(__name__)

SIGNAL_REPEAT_SECONDS = 1.0


@dataclass(frozen=True)
class Ready:
    """What a started gateway reports: where it listens and where its state lives."""

    api_url: str
    http_host: str
    http_port: int
    https_port: int
    proxy_protocol_port: int
    redis: str
    data_dir: Path
    admin_token: AdminToken
    workers: int = 1
    """Data-plane processes (`WORKERS`); 1: this process serves the public ports itself."""


async def watch_signals(shutdown: trio.Event, everything: trio.CancelScope) -> None:
    """First signal: graceful shutdown. Another one, a moment later: stop now.

    A signal repeated within `SIGNAL_REPEAT_SECONDS` is the same request delivered twice (`timeout`
    or a process manager signalling the whole process group), not an impatient operator.
    """
    first_at = 0.0
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if shutdown.is_set() and trio.current_time() - first_at < SIGNAL_REPEAT_SECONDS:
                continue
            if shutdown.is_set():
                log.warning("second %s: stopping now", signal.Signals(signum).name)
                everything.cancel()
                return
            log.info("%s: shutting down", signal.Signals(signum).name)
            first_at = trio.current_time()
            shutdown.set()


async def serve_admin_api(
    settings: Settings,
    storage: Storage,
    shutdown: trio.Event,
    *,
    embedded_redis: bool,
    certificates: CertificateManager | None = None,
    listeners: ListenerPorts | None = None,
    condition: GatewayCondition | None = None,
    bind: str | None = None,
    requests: RequestLogger | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the admin API until `shutdown` is set; started with its URL. `bind` is a socket
    bound beforehand (`fd://N`), else API_BIND_HOST:API_PORT is bound here."""
    config = HypercornConfig()
    config.bind = [bind or f"{settings.api_bind_host}:{settings.api_port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = settings.shutdown_grace_seconds
    config.include_server_header = False
    app = create_app(
        settings,
        storage,
        embedded_redis=embedded_redis,
        certificates=certificates,
        listeners=listeners,
        condition=condition,
        requests=requests,
    )
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            functools.partial(hypercorn_serve, app, config, shutdown_trigger=shutdown.wait)
        )
        task_status.started(binds[0])


DEFAULT_REDIS_PORT = 6379


async def serve(
    settings: Settings,
    *,
    shutdown: trio.Event | None = None,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Ready] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway until `shutdown` is set (or a signal arrives); started once it is ready.

    Every listener is bound first: a taken port is a `ListenerError` before anything runs."""
    shutdown = shutdown if shutdown is not None else trio.Event()
    bound = await bind_listeners(settings)
    data_plane: DataPlane
    if settings.workers > 1:
        data_plane = start_workers
    else:
        data_plane = functools.partial(start_single_process, listeners=bound)
    try:
        await _serve_bound(settings, bound, data_plane, shutdown, handle_signals, task_status)
    finally:
        await bound.aclose()


async def _serve_bound(
    settings: Settings,
    bound: BoundListeners,
    data_plane: DataPlane,
    shutdown: trio.Event,
    handle_signals: bool,
    task_status: trio.TaskStatus[Ready],
) -> None:
    condition = GatewayCondition()
    async with trio.open_nursery() as root:
        if handle_signals:
            root.start_soon(watch_signals, shutdown, root.cancel_scope)
        embedded = await _start_embedded_redis(root, settings)
        redis_url = embedded.url if embedded else str(settings.redis_url)
        replica = settings.replica_name()  # once: with HTTP_PORT 0 each call names a new one
        async with (
            open_storage(redis_url, log_db=settings.request_log_redis_db) as storage,
            open_storage(
                redis_url,
                command_timeout=settings.api_redis_timeout,
                log_db=settings.request_log_redis_db,
            ) as api_storage,
            request_logging(settings, storage) as requests,
        ):
            continuity = Continuity(
                EpochRepository(storage.redis),
                condition,
                settings.oauthproxy_data_dir / "redis-epoch",
                on_loss=functools.partial(ensure_admin_token, settings, storage),
            )
            await continuity.start()  # before the gateway writes anything of its own
            admin_token = await ensure_admin_token(settings, storage)
            await storage.routes.move_owned_pairs()  # from before owner-scoped route pairs
            async with trio.open_nursery() as services:
                certificates: CertificateManager = await services.start(
                    functools.partial(
                        serve_certificate_manager,
                        settings,
                        storage,
                        replica,
                        shutdown,
                        requests=requests,
                    )
                )
                api_url = await services.start(
                    functools.partial(
                        serve_admin_api,
                        settings,
                        api_storage,
                        shutdown,
                        embedded_redis=embedded is not None,
                        certificates=certificates,
                        listeners=dataclasses.replace(
                            bound.ports, redis=urlsplit(redis_url).port or DEFAULT_REDIS_PORT
                        ),
                        condition=condition,
                        bind=bound.admin_bind(),
                        requests=requests,
                    )
                )
                await storage.internal_services.register_api(api_url)
                engine = DockerEngine(settings.docker_host, settings.docker_api_version)
                await services.start(
                    functools.partial(
                        serve_docker_events,
                        engine,
                        storage,
                        shutdown,
                        gateway=gateway_container(settings.gateway_container),
                    )
                )
                instances = await data_plane(
                    Plane(
                        services,
                        settings,
                        storage,
                        redis_url,
                        replica,
                        bound.ports,
                        continuity,
                        api_url,
                        shutdown,
                        requests,
                        condition,
                    )
                )
                if requests.metrics is not None:
                    requests.metrics.instances = instances
                    requests.metrics.certificates = certificates.expiry
                    requests.metrics.allow(admin_token.secret)
                condition.ready = True
                task_status.started(
                    Ready(
                        api_url=api_url,
                        http_host=settings.server_host,
                        http_port=bound.ports.http,
                        https_port=bound.ports.https,
                        proxy_protocol_port=bound.ports.proxy_protocol,
                        redis="embedded" if embedded else _redacted(redis_url),
                        data_dir=settings.oauthproxy_data_dir,
                        admin_token=admin_token,
                        workers=settings.workers,
                    )
                )
                await shutdown.wait()
                grace = settings.shutdown_grace_seconds
                services.cancel_scope.deadline = trio.current_time() + grace
        root.cancel_scope.cancel()


async def _start_embedded_redis(root: trio.Nursery, settings: Settings) -> EmbeddedRedis | None:
    """The embedded Redis, in `root`, when REDIS_URL is unset."""
    if settings.redis_url is not None:
        return None
    password = settings.redis_password
    embedded: EmbeddedRedis = await root.start(
        functools.partial(
            serve_embedded_redis,
            settings.oauthproxy_data_dir,
            password=password.get_secret_value() if password else None,
        )
    )
    return embedded


def _redacted(url: str) -> str:
    scheme, _, rest = url.partition("://")
    _credentials, at, location = rest.rpartition("@")
    return f"{scheme}://***@{location}" if at else url
