"""`serve(settings)`: the root nursery that owns every part of the gateway.

    root nursery
    ├─ signal watcher: the first SIGTERM/SIGINT starts a graceful shutdown, a second one ends it
    ├─ embedded Redis (a supervised child process) when REDIS_URL is unset
    └─ storage (coredis pool), then the services nursery
       ├─ admin API (hypercorn[trio] + quart-trio) on API_BIND_HOST:API_PORT
       ├─ request logger: a bounded buffer, written to Redis in batches (outlives the services,
       │  so their last requests are written too)
       ├─ supervisor: consumes events:workflow, owns one instance nursery per hostname
       └─ dispatcher on HTTP_PORT: hands each connection to its hostname's instance

Shutdown runs in dependency order: the services drain (bounded by SHUTDOWN_GRACE_SECONDS), then
the storage pool closes, then the embedded Redis stops and flushes its data.
"""

from __future__ import annotations

import functools
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from pydantic import AnyHttpUrl

from oauthproxy.admin_token import AdminToken, ensure_admin_token
from oauthproxy.api.app import create_app
from oauthproxy.api.state import ListenerPorts
from oauthproxy.certificates.manager import CertificateManager, serve_certificate_manager
from oauthproxy.logs.logger import RequestLogger, request_logging
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.proxy.dispatcher import Front, serve_http, serve_https, serve_proxy_protocol
from oauthproxy.proxy.headers import parse_networks
from oauthproxy.proxy.limits import ConnectionLimit
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, open_storage
from oauthproxy.storage.embedded import EmbeddedRedis, serve_embedded_redis
from oauthproxy.supervisor.supervisor import Supervisor, serve_supervisor

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


async def _watch_signals(shutdown: trio.Event, everything: trio.CancelScope) -> None:
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
    requests: RequestLogger | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the admin API on loopback until `shutdown` is set; started with its URL.
    `listeners` learns the API's port here and the public ports from `serve`."""
    config = HypercornConfig()
    config.bind = [f"{settings.api_bind_host}:{settings.api_port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = settings.shutdown_grace_seconds
    config.include_server_header = False
    listeners = listeners or ListenerPorts()
    app = create_app(
        settings,
        storage,
        embedded_redis=embedded_redis,
        certificates=certificates,
        listeners=listeners,
        requests=requests,
    )
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            functools.partial(hypercorn_serve, app, config, shutdown_trigger=shutdown.wait)
        )
        listeners.api = urlsplit(binds[0]).port or 0
        task_status.started(binds[0])


DEFAULT_REDIS_PORT = 6379


async def serve(
    settings: Settings,
    *,
    shutdown: trio.Event | None = None,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Ready] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway until `shutdown` is set (or a signal arrives); started once it is ready."""
    shutdown = shutdown or trio.Event()
    async with trio.open_nursery() as root:
        if handle_signals:
            root.start_soon(_watch_signals, shutdown, root.cancel_scope)
        embedded = await _start_embedded_redis(root, settings)
        redis_url = embedded.url if embedded else str(settings.redis_url)
        replica = settings.replica_name()  # once: with HTTP_PORT 0 each call names a new one
        listeners = ListenerPorts(redis=urlsplit(redis_url).port or DEFAULT_REDIS_PORT)
        async with (
            open_storage(redis_url) as storage,
            request_logging(settings, storage) as requests,
        ):
            admin_token = await ensure_admin_token(settings, storage)
            async with trio.open_nursery() as services:
                certificates: CertificateManager = await services.start(
                    functools.partial(
                        serve_certificate_manager, settings, storage, replica, shutdown
                    )
                )
                api_url = await services.start(
                    functools.partial(
                        serve_admin_api,
                        settings,
                        storage,
                        shutdown,
                        embedded_redis=embedded is not None,
                        certificates=certificates,
                        listeners=listeners,
                        requests=requests,
                    )
                )
                await storage.internal_services.register_api(api_url)
                supervisor: Supervisor = await services.start(
                    functools.partial(
                        serve_supervisor,
                        settings,
                        storage,
                        replica,
                        api_targets(settings, api_url),
                        shutdown,
                        requests=requests,
                    )
                )
                http_port, https_port, proxy_protocol_port = await _start_listeners(
                    services, settings, storage, supervisor, shutdown, requests
                )
                listeners.http, listeners.https = http_port, https_port
                listeners.proxy_protocol = proxy_protocol_port
                task_status.started(
                    Ready(
                        api_url=api_url,
                        http_host=settings.server_host,
                        http_port=http_port,
                        https_port=https_port,
                        proxy_protocol_port=proxy_protocol_port,
                        redis="embedded" if embedded else _redacted(redis_url),
                        data_dir=settings.oauthproxy_data_dir,
                        admin_token=admin_token,
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


async def _start_listeners(
    services: trio.Nursery,
    settings: Settings,
    storage: Storage,
    supervisor: Supervisor,
    shutdown: trio.Event,
    requests: RequestLogger | None = None,
) -> tuple[int, int, int]:
    """The public HTTP, HTTPS and PROXY protocol listeners; the ports they really listen on."""
    front = Front(
        host=settings.server_host,
        instances=supervisor.instances,
        challenges=storage.challenges.get,
        trusted=parse_networks(settings.trusted_proxies),
        shutdown=shutdown,
        limit=ConnectionLimit(settings.proxy_max_connections_per_ip),
        send_timeout=settings.proxy_send_timeout,
        requests=requests,
    )
    http_port: int = await services.start(serve_http, front, settings.http_port)
    https_port: int = await services.start(serve_https, front, settings.https_port)
    proxy_port: int = await services.start(
        serve_proxy_protocol, front, settings.proxy_protocol_port
    )
    supervisor.ports.http, supervisor.ports.https = http_port, https_port
    await supervisor.sync_gateway_client()  # the callback URIs name the real ports
    return http_port, https_port, proxy_port


def api_targets(settings: Settings, api_url: str) -> list[ProxyTarget]:
    """The API hostnames (`localhost`, ...) reach the admin API through the public port."""
    return [
        ProxyTarget(hostname=hostname, target_url=AnyHttpUrl(api_url), preserve_host_header=True)
        for hostname in settings.api_hostnames
    ]


def _redacted(url: str) -> str:
    scheme, _, rest = url.partition("://")
    _credentials, at, location = rest.rpartition("@")
    return f"{scheme}://***@{location}" if at else url
