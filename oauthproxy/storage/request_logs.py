"""The request log in Redis: one pipeline per batch of writes, and the reads the queries need.

The key schema and what a batch writes are decided in `oauthproxy.logs.schema` (pure); this
module only sends it. Writes are pipelined without MULTI: a batch is many independent appends,
and a partial batch (Redis went away mid-way) is as good as the entries it wrote.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import cast

from coredis.tokens import PureToken

from oauthproxy.logs import schema
from oauthproxy.storage.base import Redis, scan_keys, translate_errors

Entry = dict[str, str]


@translate_errors
class RequestLogRepository:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def write(self, plan: schema.WritePlan, *, retention: int, stream_maxlen: int) -> None:
        """Send one batch's writes; every key it touches expires after `retention` seconds."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, fields in plan.hashes.items():
                pipe.hset(key, fields)
                pipe.expire(key, retention)
            for index, members in plan.indexed.items():
                pipe.zadd(index, cast("Mapping[str | bytes, float]", members))
                pipe.zremrangebyscore(index, -math.inf, plan.oldest)
                pipe.expire(index, retention)
            for key, count in plan.counters.items():
                pipe.incrby(key, count)
                pipe.expire(key, retention)
            for key, ips in plan.visitors.items():
                pipe.pfadd(key, *ips)
                pipe.expire(key, retention)
            for key, values in plan.durations.items():
                pipe.lpush(key, values)
                pipe.ltrim(key, 0, schema.DURATION_WINDOW - 1)
                pipe.expire(key, retention)
            for fields in plan.stream:
                pipe.xadd(
                    schema.STREAM,
                    fields,
                    trim_strategy=PureToken.MAXLEN,
                    trim_operator=PureToken.APPROXIMATELY,
                    threshold=stream_maxlen,
                )
            if plan.stream:
                pipe.expire(schema.STREAM, retention)

    async def keys_in(self, index: str, since: float, *, limit: int) -> list[str]:
        """Entry keys of `index` from `since` on, newest first, at most `limit`."""
        found = await self._redis.zrange(
            index, math.inf, since, sortby=PureToken.BYSCORE, rev=True, offset=0, count=limit
        )
        return [str(key) for key in found]

    async def entries(self, keys: Sequence[str]) -> list[Entry]:
        """The entries behind `keys`, in order; entries expired meanwhile are left out."""
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            pending = [pipe.hgetall(key) for key in keys]
        found = [dict(await reply) for reply in pending]
        return [entry for entry in found if entry]

    async def latest(self, *, after: str = "+", count: int) -> list[tuple[str, Entry]]:
        """Stream entries newest first (`after`: an exclusive upper stream id)."""
        end = "+" if after == "+" else f"({after}"
        found = await self._redis.xrevrange(schema.STREAM, end=end, start="-", count=count)
        return [(str(item.identifier), _strings(item.field_values)) for item in found]

    async def following(self, last_id: str, *, count: int) -> list[tuple[str, Entry]]:
        """Stream entries added after `last_id` (oldest first)."""
        found = await self._redis.xrange(schema.STREAM, start=f"({last_id}", end="+", count=count)
        return [(str(item.identifier), _strings(item.field_values)) for item in found]

    async def counter(self, key: str) -> int:
        value = await self._redis.get(key)
        return int(value or 0)

    async def unique(self, keys: list[str]) -> int:
        """Distinct members across these HyperLogLogs (missing keys count as empty)."""
        return int(await self._redis.pfcount(keys))

    async def durations(self, hostname: str) -> list[float]:
        values = await self._redis.lrange(schema.durations(hostname), 0, -1)
        return [float(value) for value in values]

    async def memory(self) -> int:
        """Bytes Redis reports in use (for the benchmark's memory per logged request)."""
        info = await self._redis.info("memory")
        return int(str(info.get("used_memory", 0)))

    async def clear(self) -> int:
        """Delete every key of the request log; how many were deleted."""
        found: list[str] = []
        for prefix in schema.PREFIXES:
            found.extend(await scan_keys(self._redis, prefix + "*"))
        deleted = 0
        for start in range(0, len(found), 500):
            deleted += await self._redis.unlink(found[start : start + 500])
        return deleted


def _strings(values: Mapping[str | bytes, str | bytes]) -> Entry:
    return {str(name): str(value) for name, value in values.items()}
