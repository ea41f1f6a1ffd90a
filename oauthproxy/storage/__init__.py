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


@asynccontextmanager
async def open_storage(url: str, *, command_timeout: float | None = None) -> AsyncIterator[Storage]:
    """Connect to Redis at `url`; the connection pool lives as long as the `async with` block.

    With `command_timeout`, a command whose answer takes longer raises `StorageTimeout`: the admin
    API's storage has one, so a stalled Redis costs a caller a bounded wait and a 503, not a hang.
    """
    client: Redis = coredis.Redis.from_url(
        url, decode_responses=True, stream_timeout=command_timeout
    )
    async with client:
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
            request_logs=RequestLogRepository(client),
        )
