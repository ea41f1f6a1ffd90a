"""The request log in Redis: one script call per batch of writes, and the reads the queries need.

The key schema and what a batch writes are decided in `oauthproxy.logs.schema` (pure); this
module only sends it. A batch goes as one EVALSHA of two strings: a JSON header (indexes,
statistics) and every entry's key and packed fields, joined; the script splits them and one HSET
per bucket stores them. The gateway encodes neither a command nor an argument per entry (the
client's cost per argument is about a microsecond), and Redis does the writes. The script names
its keys in ARGV, not KEYS, so it runs on a standalone Redis (or Sentinel), not on a Redis
Cluster.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from coredis.response.types import StreamEntry
from coredis.tokens import PureToken

from oauthproxy.logs import schema
from oauthproxy.storage.base import Redis, scan_keys, translate_errors
from oauthproxy.storage.request_log_script import WRITE_BATCH

Entry = dict[str, str]


def completed(key: str, stored: Entry) -> Entry:
    """An entry's stored fields with those its key holds (`req:{timestamp}-{n}:{ip}`) and the
    default values of those it leaves out; empty when the entry has expired."""
    if not stored:
        return stored
    stamp, _colon, ip = key.removeprefix("req:").partition(":")
    return {"timestamp": stamp.partition("-")[0], "client_ip": ip, **schema.DEFAULTS, **stored}


def _items(found: Sequence[StreamEntry]) -> list[tuple[str, list[str]]]:
    """Stream items as (id, the entry keys it carries); an item written before a batch shared
    one carries a single `key`."""
    return [
        (str(item.identifier), str(item.field_values.get("keys", "")).split())
        if "keys" in item.field_values
        else (str(item.identifier), [str(item.field_values.get("key", ""))])
        for item in found
    ]


@translate_errors
class RequestLogRepository:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._write_batch = redis.register_script(WRITE_BATCH)

    async def write(
        self, batch: Sequence[str], *, retention: int, stream_maxlen: int, durable: bool = False
    ) -> None:
        """Send one batch's writes (`schema.encoded`); every key it touches expires after
        `retention` seconds (a bucket: that long after its first second)."""
        args: list[str | int] = [
            batch[0], retention, stream_maxlen, schema.INDEX_LIMIT, schema.INDEX_SLACK,
            schema.DURATION_WINDOW, schema.STREAM_CHUNK, "1" if durable else "0",
            schema.BUCKET_SECONDS, int(time.time()), batch[1], schema.COUNT,
            schema.INDEX_CHUNK,
        ]  # fmt: skip
        await self._write_batch(keys=[], args=args)

    async def keys_in(self, index: str, since: float, *, limit: int) -> list[str]:
        """Entry keys of `index` from `since` on, newest first, at most `limit`. A member holds
        how many entries it lists and their keys (up to `schema.INDEX_CHUNK`), space-separated,
        and is scored by the newest one's time (one written before, a key alone):
        every member from `since` on is read (an index lists at most `schema.INDEX_LIMIT` +
        `schema.INDEX_SLACK` + `schema.INDEX_CHUNK` entries), and its keys sorted."""
        found = await self._redis.zrange(
            index, math.inf, since, sortby=PureToken.BYSCORE, rev=True, offset=0,
            count=schema.INDEX_LIMIT + schema.INDEX_SLACK + schema.INDEX_CHUNK,
        )  # fmt: skip
        keys = [
            key
            for member in found
            for key in str(member).split(" ")  # (a count, then the keys; or a key alone)
            if key.startswith("req:") and schema.time_of(key) >= since
        ]
        keys.sort(key=schema.time_of, reverse=True)
        return keys[:limit]

    async def entries(self, keys: Sequence[str]) -> list[Entry]:
        """The entries behind `keys`, in order; entries expired meanwhile are left out."""
        return [entry for entry in await self.entries_in_order(keys) if entry]

    async def entries_in_order(self, keys: Sequence[str]) -> list[Entry]:
        """The entries behind `keys`, one for each (empty for one expired meanwhile): one HMGET
        per bucket, and an HGETALL for an entry written as a hash of its own (before buckets)."""
        if not keys:
            return []
        by_bucket: dict[str, list[int]] = {}
        for place, key in enumerate(keys):
            by_bucket.setdefault(schema.bucket_of(key), []).append(place)
        found: list[Entry] = [{} for _key in keys]
        async with self._redis.pipeline(transaction=False) as pipe:
            pending = [
                (places, pipe.hmget(bucket, [keys[place] for place in places]))
                for bucket, places in by_bucket.items()
            ]
        missing = []
        for places, reply in pending:
            for place, packed in zip(places, await reply, strict=True):
                if packed is None:
                    missing.append(place)
                else:
                    found[place] = completed(keys[place], schema.unpacked(packed))
        if missing:
            async with self._redis.pipeline(transaction=False) as pipe:
                hashes = [pipe.hgetall(keys[place]) for place in missing]
            for place, stored in zip(missing, hashes, strict=True):
                found[place] = completed(keys[place], dict(await stored))
        return found

    async def latest(self, *, count: int) -> list[tuple[str, Entry]]:
        """The newest `count` stream entries, newest first, as (stream id, entry)."""
        found = await self._redis.xrevrange(schema.STREAM, end="+", start="-", count=count)
        listed = [(ident, key) for ident, keys in _items(found) for key in reversed(keys)]
        return await self._resolved(listed[:count])

    async def following(self, last_id: str, *, count: int) -> list[tuple[str, Entry]]:
        """Stream entries added after `last_id` (oldest first), as (stream id, entry): those of
        at most `count` stream items, whole (an item is one batch's: up to STREAM_CHUNK), so
        the last id answered never skips an entry."""
        found = await self._redis.xrange(schema.STREAM, start=f"({last_id}", end="+", count=count)
        listed, total = [], 0
        for ident, keys in _items(found):
            if total >= count:
                break
            listed += [(ident, key) for key in keys]
            total += len(keys)
        return await self._resolved(listed)

    async def _resolved(self, listed: Sequence[tuple[str, str]]) -> list[tuple[str, Entry]]:
        """Stream entries with their hashes (entries expired meanwhile are left out)."""
        entries = await self.entries_in_order([key for _ident, key in listed])
        return [
            (ident, entry) for (ident, _key), entry in zip(listed, entries, strict=True) if entry
        ]

    async def counters(self, keys: Sequence[str]) -> list[int]:
        """The values of these counters (0 for those that do not exist), in one MGET."""
        values = await self._redis.mget(keys) if keys else []
        return [int(value or 0) for value in values]

    async def unique(self, keys: list[str]) -> int:
        """Distinct members across these HyperLogLogs (missing keys count as empty)."""
        return int(await self._redis.pfcount(keys)) if keys else 0

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
