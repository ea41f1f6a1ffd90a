"""The request log in Redis: one script call per batch of writes, and the reads the queries need.

The key schema and what a batch writes are decided in `oauthproxy.logs.schema` (pure); this
module only sends it. A batch goes as one EVALSHA whose only argument is the batch as JSON: the
gateway encodes one string instead of a few dozen commands per entry (what a pipeline would
cost it), and Redis does the writes. The script names its keys in ARGV, not KEYS, so it runs on
a standalone Redis (or Sentinel), not on a Redis Cluster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from coredis.response.types import StreamEntry
from coredis.tokens import PureToken

from oauthproxy.logs import schema
from oauthproxy.storage.base import Redis, scan_keys, translate_errors

Entry = dict[str, str]

# ARGV[1]: the batch as JSON (`schema.encoded`): {"names": field names, "defaults": {name:
# value}, "first": the first entry's sequence number, "entries": [values], "groups": [[[index
# keys], [positions]]], "counters": {key: n}, "visitors": {key: [positions]}, "durations": {key:
# [positions]}} (positions from 1 into "entries"); ARGV[2] retention seconds; ARGV[3] the
# stream's MAXLEN; ARGV[4] the members an index keeps, ARGV[5] how many more it may hold before
# it is trimmed; ARGV[6] durations kept per hostname; ARGV[7] entry keys per stream item.
# An entry's key is built here (`schema.entry_key`); its hash holds its fields but the
# timestamp and the client IP, which its key holds, and no field that is empty or has its
# default value (`schema.DEFAULTS`): readers fill them in (`completed`). The stream carries
# entry keys only, a batch's in one item (up to STREAM_CHUNK, space-separated: keys hold no
# spaces); its readers fetch the hashes. The stream keeps about LOG_STREAM_MAXLEN entries: as
# many items as this batch's make that many. ARGV[8] "1": the writes go to the AOF and to
# replicas (REQUEST_LOG_DURABLE), else they stay in memory (and RDB snapshots): a best-effort
# log need not double Redis's work per request. Long argument lists go in slices (Lua's unpack
# has a limit).
WRITE_BATCH = """
if ARGV[8] ~= '1' then
  if redis.replicate_commands then redis.replicate_commands() end
  redis.set_repl(redis.REPL_NONE)
end
local batch = cjson.decode(ARGV[1])
local retention = tonumber(ARGV[2])
local maxlen = ARGV[3]
local limit, slack = tonumber(ARGV[4]), tonumber(ARGV[5])
local names, entries, first = batch.names, batch.entries, batch.first
local defaults = batch.defaults
local TIME, IP, DURATION = 1, 2, 10
local function sliced(command, key, list, width)
  for start = 1, #list, width do
    redis.call(command, key, unpack(list, start, math.min(start + width - 1, #list)))
  end
end
local keys = {}
for position, values in ipairs(entries) do
  local key = 'req:' .. values[TIME] .. '-' .. ((first + position - 1) % 1000000) .. ':'
    .. values[IP]
  keys[position] = key
  local fields, n = {}, 0
  for field = 3, #names do
    local value = values[field]
    if value ~= '' and value ~= defaults[names[field]] then
      fields[n + 1] = names[field]
      fields[n + 2] = value
      n = n + 2
    end
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('EXPIRE', key, retention)
end
local chunk = tonumber(ARGV[7])
for start = 1, #keys, chunk do
  local last = math.min(start + chunk - 1, #keys)
  local items = math.max(1, math.floor(maxlen / (last - start + 1)))
  redis.call('XADD', 'stream:requests', 'MAXLEN', '~', items, '*',
    'keys', table.concat(keys, ' ', start, last))
end
if #entries > 0 then
  redis.call('EXPIRE', 'stream:requests', retention)
end
local touched = {}
for _, group in ipairs(batch.groups) do
  local indexes, positions = group[1], group[2]
  local members = {}
  for n, position in ipairs(positions) do
    members[2 * n - 1] = entries[position][TIME]
    members[2 * n] = keys[position]
  end
  for _, index in ipairs(indexes) do
    sliced('ZADD', index, members, 1000)
    touched[index] = true
  end
end
for index in pairs(touched) do
  redis.call('EXPIRE', index, retention)
  if redis.call('ZCARD', index) > limit + slack then
    redis.call('ZREMRANGEBYRANK', index, 0, -(limit + 1))
  end
end
for key, count in pairs(batch.counters) do
  redis.call('INCRBY', key, count)
  redis.call('EXPIRE', key, retention)
end
local function gathered(positions, field)
  local found = {}
  for n, position in ipairs(positions) do
    found[n] = entries[position][field]
  end
  return found
end
for key, positions in pairs(batch.visitors) do
  sliced('PFADD', key, gathered(positions, IP), 1000)
  redis.call('EXPIRE', key, retention)
end
for key, positions in pairs(batch.durations) do
  sliced('LPUSH', key, gathered(positions, DURATION), 1000)
  redis.call('LTRIM', key, 0, tonumber(ARGV[6]) - 1)
  redis.call('EXPIRE', key, retention)
end
return #entries
"""


def completed(key: str, stored: Entry) -> Entry:
    """A stored hash with the fields its key holds (`req:{timestamp}-{n}:{ip}`) and the default
    values it leaves out; empty when the entry has expired."""
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
        self, batch: str, *, retention: int, stream_maxlen: int, durable: bool = False
    ) -> None:
        """Send one batch's writes (`encoded`); every key it touches expires after `retention`
        seconds."""
        args: list[str | int] = [
            batch, retention, stream_maxlen, schema.INDEX_LIMIT, schema.INDEX_SLACK,
            schema.DURATION_WINDOW, schema.STREAM_CHUNK, "1" if durable else "0",
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
        return [entry for entry in await self.entries_in_order(keys) if entry]

    async def entries_in_order(self, keys: Sequence[str]) -> list[Entry]:
        """The entries behind `keys`, one for each (empty for one expired meanwhile)."""
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            pending = [pipe.hgetall(key) for key in keys]
        return [completed(key, dict(await reply)) for key, reply in zip(keys, pending, strict=True)]

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
