"""`proxy:{hostname}`: proxy targets. Every write queues its workflow event atomically."""

from __future__ import annotations

from oauthproxy.errors import Conflict
from oauthproxy.models.events import EventType
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.storage import keys
from oauthproxy.storage.base import JsonRepository, Pipeline, dump, translate_errors
from oauthproxy.storage.events import queue_event


def _event_data(target: ProxyTarget) -> dict[str, object]:
    return {
        "enable_http": target.enable_http,
        "enable_https": target.enable_https,
        "cert_name": target.cert_name,
    }


@translate_errors
class ProxyRepository(JsonRepository[ProxyTarget]):
    model = ProxyTarget
    prefix = keys.proxy("")
    skip = ("proxy:client:",)

    async def create(self, target: ProxyTarget) -> None:
        async with (
            self._redis.pipeline(transaction=True) as pipe,
            pipe.watch(keys.proxy(target.hostname)),
        ):
            if await self._redis.exists([keys.proxy(target.hostname)]):
                raise Conflict("hostname", f"a proxy for {target.hostname} already exists")
            pipe.set(keys.proxy(target.hostname), dump(target))
            queue_event(pipe, EventType.PROXY_CREATED, target.hostname, **_event_data(target))

    @staticmethod
    def queue_delete(pipe: Pipeline, target: ProxyTarget) -> None:
        pipe.delete([keys.proxy(target.hostname), keys.workflow_state(target.hostname)])
        queue_event(pipe, EventType.PROXY_DELETED, target.hostname)

    @staticmethod
    def watched_keys(target: ProxyTarget) -> list[str]:
        return [keys.proxy(target.hostname)]
