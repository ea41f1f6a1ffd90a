"""`proxy:{hostname}`: proxy targets. Every write queues its workflow event atomically.

Knows nothing of certificates: a proxy names one (`cert_name`), and what that link means (who
links, what a deleted certificate does to its proxies) is `cascades`'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from oauthproxy.errors import Conflict
from oauthproxy.models.events import EventType
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.storage import keys
from oauthproxy.storage.base import Pipeline, Redis, atomically, dump, translate_errors
from oauthproxy.storage.editing import Edit, EditableRepository, anyone, no_companions
from oauthproxy.storage.events import STREAM_MAX_LENGTH, event_fields, queue_event

T = TypeVar("T")

ProxyCheck = Callable[[ProxyTarget], object]
"""Raises when the caller may not touch this proxy."""

# The proxy (KEYS[1]), unless it is gone: stored as ARGV[2] if it is still as read (ARGV[1]),
# then told with `proxy_updated` (ARGV[4..]) on the stream KEYS[2]. A proxy changed meanwhile
# keeps that change and is told all the same.
_REPLACE_IF_UNCHANGED = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if current == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
return 1
"""


def event_data(target: ProxyTarget) -> dict[str, object]:
    """The `data` of a proxy's workflow events."""
    return {
        "enable_http": target.enable_http,
        "enable_https": target.enable_https,
        "cert_name": target.cert_name,
    }


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
        self._replace_if_unchanged = redis.register_script(_REPLACE_IF_UNCHANGED)

    async def create(self, target: ProxyTarget) -> None:
        """Store a new proxy and queue `proxy_created`; `Conflict` when the hostname is taken
        (also when another write took it a moment ago)."""
        key = keys.proxy(target.hostname)

        async def write(pipe: Pipeline) -> None:
            if await self._redis.exists([key]):
                raise Conflict("hostname", f"a proxy for {target.hostname} already exists")
            pipe.set(key, dump(target))
            queue_event(pipe, EventType.PROXY_CREATED, target.hostname, **event_data(target))

        await atomically(self._redis, [key], write)

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

    async def edit(
        self,
        hostname: str,
        write: Edit[ProxyTarget, T],
        companions: Callable[[ProxyTarget], list[str]] = no_companions,
    ) -> T:
        """Run `write` on the current proxy in a transaction that also watches
        `companions(current)`; retried until nothing interferes (`NotFound` if gone)."""
        return await self._edit(hostname, write, companions)

    async def delete(self, hostname: str, *, check: ProxyCheck = anyone) -> ProxyTarget:
        """Delete the proxy and queue `proxy_deleted`, atomically; `check` may raise to refuse.
        The proxy as it was."""

        async def remove(pipe: Pipeline, current: ProxyTarget) -> ProxyTarget:
            check(current)
            self.queue_delete(pipe, current)
            return current

        return await self._edit(hostname, remove)

    def queue_replace_if_unchanged(
        self, pipe: Pipeline, seen: ProxyTarget, updated: ProxyTarget
    ) -> None:
        """Queue, on the transaction `pipe`: store `updated` over the proxy if it is still `seen`,
        and `proxy_updated` unless it is gone by then (deleted earlier in the same transaction,
        say). A proxy changed meanwhile keeps that change, and is told all the same."""
        fields = event_fields(EventType.PROXY_UPDATED, seen.hostname, **event_data(updated))
        event = [part for field in fields.items() for part in field]
        self._replace_if_unchanged(
            keys=[keys.proxy(seen.hostname), keys.EVENTS_WORKFLOW],
            args=[dump(seen), dump(updated), STREAM_MAX_LENGTH, *event],
            client=pipe,
        )

    @staticmethod
    def queue_delete(pipe: Pipeline, target: ProxyTarget) -> None:
        pipe.delete([keys.proxy(target.hostname), keys.workflow_state(target.hostname)])
        queue_event(pipe, EventType.PROXY_DELETED, target.hostname, **event_data(target))

    @staticmethod
    def watched_keys(target: ProxyTarget) -> list[str]:
        return [keys.proxy(target.hostname)]
