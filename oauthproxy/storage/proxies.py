"""`proxy:{hostname}`: proxy targets. Every write queues its workflow event atomically."""

from __future__ import annotations

from collections.abc import Callable

from oauthproxy.errors import Conflict
from oauthproxy.models.certificates import Certificate
from oauthproxy.models.events import EventType
from oauthproxy.models.proxies import ProxyDeleted, ProxyTarget
from oauthproxy.storage import keys
from oauthproxy.storage.base import Pipeline, Redis, dump, translate_errors
from oauthproxy.storage.certificates import CertificateRepository
from oauthproxy.storage.editing import EditableRepository, anyone, no_companions
from oauthproxy.storage.events import queue_event

ProxyCheck = Callable[[ProxyTarget], object]
"""Raises when the caller may not touch this proxy."""

CertificateChoice = Callable[[Certificate], bool]
"""Whether the proxy's certificate goes with it."""


def event_data(target: ProxyTarget) -> dict[str, object]:
    """The `data` of a proxy's workflow events."""
    return {
        "enable_http": target.enable_http,
        "enable_https": target.enable_https,
        "cert_name": target.cert_name,
    }


def _certificate_key(target: ProxyTarget) -> list[str]:
    return [keys.cert(target.cert_name)] if target.cert_name else []


@translate_errors
class ProxyRepository(EditableRepository[ProxyTarget]):
    model = ProxyTarget
    prefix = keys.proxy("")
    skip = ("proxy:client:",)
    """The original system's PROXY-protocol side channel shares the prefix; we never write it (the
    client's address travels with the connection), but a Redis it used may still hold some."""
    kind = "proxy"

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self._certificates = CertificateRepository(redis)

    async def create(self, target: ProxyTarget) -> None:
        async with (
            self._redis.pipeline(transaction=True) as pipe,
            pipe.watch(keys.proxy(target.hostname)),
        ):
            if await self._redis.exists([keys.proxy(target.hostname)]):
                raise Conflict("hostname", f"a proxy for {target.hostname} already exists")
            pipe.set(keys.proxy(target.hostname), dump(target))
            queue_event(pipe, EventType.PROXY_CREATED, target.hostname, **event_data(target))

    async def modify(
        self, hostname: str, change: Callable[[ProxyTarget], ProxyTarget]
    ) -> ProxyTarget:
        """Replace the proxy with `change(current)` and queue `proxy_updated`, atomically.

        `change` may raise to refuse; `NotFound` when there is no such proxy (any more).
        """

        async def write(pipe: Pipeline, current: ProxyTarget) -> ProxyTarget:
            updated = change(current)
            pipe.set(keys.proxy(hostname), dump(updated))
            queue_event(pipe, EventType.PROXY_UPDATED, hostname, **event_data(updated))
            return updated

        return await self._edit(hostname, write)

    async def update(self, target: ProxyTarget) -> None:
        """Store `target` over its proxy if that still exists (never re-creating a deleted one)."""
        await self.modify(target.hostname, lambda _current: target)

    async def delete(
        self,
        hostname: str,
        *,
        check: ProxyCheck = anyone,
        with_certificate: CertificateChoice | None = None,
    ) -> ProxyDeleted:
        """Delete the proxy and queue `proxy_deleted`, atomically; with its certificate too when
        `with_certificate` chooses it. `check` may raise to refuse."""

        async def remove(pipe: Pipeline, current: ProxyTarget) -> ProxyDeleted:
            check(current)
            certificate = await self._chosen_certificate(current, with_certificate)
            self.queue_delete(pipe, current)
            if certificate is not None:
                await self._certificates.queue_delete(pipe, certificate)
            return ProxyDeleted(
                hostname=hostname,
                deleted_certificate=certificate.cert_name if certificate else None,
            )

        companions = _certificate_key if with_certificate else no_companions
        return await self._edit(hostname, remove, companions)

    async def _chosen_certificate(
        self, target: ProxyTarget, choice: CertificateChoice | None
    ) -> Certificate | None:
        if choice is None or target.cert_name is None:
            return None
        certificate = await self._certificates.get(target.cert_name)
        return certificate if certificate is not None and choice(certificate) else None

    @staticmethod
    def queue_delete(pipe: Pipeline, target: ProxyTarget) -> None:
        pipe.delete([keys.proxy(target.hostname), keys.workflow_state(target.hostname)])
        queue_event(pipe, EventType.PROXY_DELETED, target.hostname, **event_data(target))

    @staticmethod
    def watched_keys(target: ProxyTarget) -> list[str]:
        return [keys.proxy(target.hostname)]
