"""The request log in Redis: one script call per batch of writes, and the reads the queries need.

The key schema and what a batch writes are decided in `oauthproxy.logs.schema` (pure); this
module only sends it. A batch goes as one EVALSHA whose only argument is the batch as JSON: the
gateway encodes one string instead of a few dozen commands per entry (what a pipeline would
cost it), and Redis does the writes. The script names its keys in ARGV, not KEYS, so it runs on
a standalone Redis (or Sentinel), not on a Redis Cluster.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from coredis.response.types import StreamEntry
from coredis.tokens import PureToken

from oauthproxy.logs import schema
from oauthproxy.logs.records import FIELDS
from oauthproxy.storage.base import Redis, scan_keys, translate_errors

Entry = dict[str, str]

# ARGV[1]: the batch as JSON: {"names": field names, "entries": [[key, values]], "indexed":
# {index: [position]}, "counters": {key: n}, "visitors": {key: [position]}, "durations":
# {key: [position]}} (positions from 1 into "entries"); ARGV[2] retention seconds; ARGV[3] the
# stream's MAXLEN; ARGV[4] the oldest index score kept; ARGV[5] durations kept per hostname.
# Empty fields are not stored (readers fill them in). The stream carries entry keys only (its
# readers fetch the hashes). Long argument lists go in
# slices (Lua's unpack has a limit).
WRITE_BATCH = """
local batch = cjson.decode(ARGV[1])
local retention = tonumber(ARGV[2])
local maxlen = ARGV[3]
local oldest = ARGV[4]
local names, entries = batch.names, batch.entries
local TIME, IP, DURATION = 1, 2, 10
local function sliced(command, key, list, width)
  for first = 1, #list, width do
    redis.call(command, key, unpack(list, first, math.min(first + width - 1, #list)))
  end
end
for _, item in ipairs(entries) do
  local key, values = item[1], item[2]
  local fields = {}
  for n = 1, #names do
    if values[n] ~= '' then
      fields[#fields + 1] = names[n]
      fields[#fields + 1] = values[n]
    end
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('EXPIRE', key, retention)
  redis.call('XADD', 'stream:requests', 'MAXLEN', '~', maxlen, '*', 'key', key)
end
if #entries > 0 then
  redis.call('EXPIRE', 'stream:requests', retention)
end
for index, positions in pairs(batch.indexed) do
  local members = {}
  for _, position in ipairs(positions) do
    local entry = entries[position]
    members[#members + 1] = entry[2][TIME]
    members[#members + 1] = entry[1]
  end
  sliced('ZADD', index, members, 1000)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. oldest)
  redis.call('EXPIRE', index, retention)
end
for key, count in pairs(batch.counters) do
  redis.call('INCRBY', key, count)
  redis.call('EXPIRE', key, retention)
end
local function gathered(positions, field)
  local found = {}
  for n, position in ipairs(positions) do
    found[n] = entries[position][2][field]
  end
  return found
end
for key, positions in pairs(batch.visitors) do
  sliced('PFADD', key, gathered(positions, IP), 1000)
  redis.call('EXPIRE', key, retention)
end
for key, positions in pairs(batch.durations) do
  sliced('LPUSH', key, gathered(positions, DURATION), 1000)
  redis.call('LTRIM', key, 0, tonumber(ARGV[5]) - 1)
  redis.call('EXPIRE', key, retention)
end
return #entries
"""


@translate_errors
class RequestLogRepository:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._write_batch = redis.register_script(WRITE_BATCH)

    async def write(self, plan: schema.WritePlan, *, retention: int, stream_maxlen: int) -> None:
        """Send one batch's writes; every key it touches expires after `retention` seconds."""
        if not plan.entries:
            return
        batch = json.dumps(
            {
                "names": FIELDS,
                "entries": plan.entries,
                "indexed": plan.indexed,
                "counters": plan.counters,
                "visitors": plan.visitors,
                "durations": plan.durations,
            },
            separators=(",", ":"),
        )
        args: list[str | int] = [
            batch, retention, stream_maxlen, repr(plan.oldest), schema.DURATION_WINDOW
        ]  # fmt: skip
        await self._write_batch(keys=[], args=args)

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

    async def latest(self, *, count: int) -> list[tuple[str, Entry]]:
        """The newest stream entries, newest first, as (stream id, entry)."""
        found = await self._redis.xrevrange(schema.STREAM, end="+", start="-", count=count)
        return await self._resolved(found)

    async def following(self, last_id: str, *, count: int) -> list[tuple[str, Entry]]:
        """Stream entries added after `last_id` (oldest first), as (stream id, entry)."""
        found = await self._redis.xrange(schema.STREAM, start=f"({last_id}", end="+", count=count)
        return await self._resolved(found)

    async def _resolved(self, found: Sequence[StreamEntry]) -> list[tuple[str, Entry]]:
        """Stream items with their entries (the stream carries keys; expired ones are left out)."""
        ids = [str(item.identifier) for item in found]
        keys = [str(item.field_values.get("key", "")) for item in found]
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            pending = [pipe.hgetall(key) for key in keys]
        entries = [dict(await reply) for reply in pending]
        return [(ident, entry) for ident, entry in zip(ids, entries, strict=True) if entry]

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
