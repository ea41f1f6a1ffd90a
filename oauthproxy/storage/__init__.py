"""Redis storage: the only package that imports coredis.

`open_storage(url)` yields a `Storage` holding one repository per entity of the specification's
key schema. Repositories raise the project's own errors (`StorageUnavailable`, `Conflict`) and
know nothing of each other; every rule that joins two kinds of record (certificate links, the
cascades of a deleted certificate, proxy or token) is in `cascades`, above them, and the orphan
sweep in `orphans`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import coredis
import trio

from oauthproxy.storage import keys
from oauthproxy.storage.base import Redis, scan_keys, translate_errors
from oauthproxy.storage.certificates import CertificateRepository
from oauthproxy.storage.challenges import ChallengeRepository
from oauthproxy.storage.dashboard import DashboardRepository
from oauthproxy.storage.oauth import OAuthStore
from oauthproxy.storage.ports import PortRepository
from oauthproxy.storage.proxies import ProxyRepository
from oauthproxy.storage.proxy_logins import ProxyLoginRepository
from oauthproxy.storage.request_logs import RequestLogRepository
from oauthproxy.storage.resources import ResourceRepository
from oauthproxy.storage.routes import RouteRepository
from oauthproxy.storage.services import (
    DockerServiceRepository,
    ExternalServiceRepository,
    InternalServiceRepository,
)
from oauthproxy.storage.tokens import TokenRepository
from oauthproxy.storage.workflow import WorkflowConsumer

__all__ = ["Storage", "open_storage"]


@translate_errors
@dataclass(frozen=True)
class Storage:
    redis: Redis
    tokens: TokenRepository
    proxies: ProxyRepository
    certificates: CertificateRepository
    routes: RouteRepository
    external_services: ExternalServiceRepository
    internal_services: InternalServiceRepository
    challenges: ChallengeRepository
    proxy_logins: ProxyLoginRepository
    docker_services: DockerServiceRepository
    ports: PortRepository
    oauth: OAuthStore
    resources: ResourceRepository
    request_logs: RequestLogRepository
    log_redis: Redis
    """The request log's own logical database (see `open_storage`)."""
    dashboard: DashboardRepository

    async def ping(self) -> float:
        """Round-trip time to Redis in milliseconds."""
        started = trio.current_time()
        await self.redis.ping()
        return (trio.current_time() - started) * 1000

    async def server_info(self) -> dict[str, str]:
        info = await self.redis.info("server")
        return {
            "version": str(info.get("valkey_version") or info.get("redis_version", "?")),
            "mode": str(info.get("redis_mode", "standalone")),
        }

    async def service_urls(self) -> dict[str, str]:
        """Every `service:url:{name}`: the base URL each service name stands for."""
        found = await scan_keys(self.redis, keys.service_url("*"))
        values = await self.redis.mget(found) if found else []
        prefix = len(keys.service_url(""))
        return {key[prefix:]: url for key, url in zip(found, values, strict=True) if url}

    def workflow_consumer(self, replica: str) -> WorkflowConsumer:
        return WorkflowConsumer(self.redis, replica)


DEFAULT_LOG_DB = 1
"""The logical database the request log lives in (`REQUEST_LOG_REDIS_DB`)."""


@asynccontextmanager
async def open_storage(
    url: str, *, command_timeout: float | None = None, log_db: int = DEFAULT_LOG_DB
) -> AsyncIterator[Storage]:
    """Connect to Redis at `url`; the connection pools live as long as the `async with` block.

    With `command_timeout`, a command whose answer takes longer raises `StorageTimeout`: the admin
    API's storage has one, so a stalled Redis costs a caller a bounded wait and a 503, not a hang.

    The request log lives in its own logical database, `log_db`, on the same server: it holds
    several keys per request, and listing a kind of record scans the keyspace of its database, so
    sharing one database made every list and create of the admin API slower with every request
    logged (120 ms per call at 300,000 keys).
    """
    client: Redis = coredis.Redis.from_url(
        url, decode_responses=True, stream_timeout=command_timeout
    )
    log_client: Redis = coredis.Redis.from_url(
        url, db=log_db, decode_responses=True, stream_timeout=command_timeout
    )
    async with client, log_client:
        yield Storage(
            redis=client,
            tokens=TokenRepository(client),
            proxies=ProxyRepository(client),
            certificates=CertificateRepository(client),
            routes=RouteRepository(client),
            external_services=ExternalServiceRepository(client),
            internal_services=InternalServiceRepository(client),
            challenges=ChallengeRepository(client),
            proxy_logins=ProxyLoginRepository(client),
            docker_services=DockerServiceRepository(client),
            ports=PortRepository(client),
            oauth=OAuthStore(client),
            resources=ResourceRepository(client),
            request_logs=RequestLogRepository(log_client),
            log_redis=log_client,
            dashboard=DashboardRepository(client),
        )
