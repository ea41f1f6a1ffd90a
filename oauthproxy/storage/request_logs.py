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

Entry = dict[str, str]

# ARGV[1]: the batch's header as JSON (`schema.encoded`): {"n": entries, "runs": [[bucket, first
# position, last position]], "buckets": {bucket: its first second}, "groups": [[[index keys], [[the
# newest entry's score, [positions]], ...: an index member each]]], "counters": {key: n},
# "visitors": {key: [client IPs]}, "durations": {key: [durations]}} (positions count from 1);
# ARGV[2] retention seconds; ARGV[3] the stream's MAXLEN; ARGV[4] the entries an index keeps,
# ARGV[5] how many more it may list before it is trimmed (its oldest members go, as long as it keeps
# that many; its member ARGV[12], `schema.COUNT`, holds as its score how many entries it lists; an
# index written before chunks, without it, lists one per member); ARGV[13] the most keys a member
# holds (members are read, to be trimmed, a few at a time: they are long); ARGV[6] durations kept
# per hostname; ARGV[7] entry keys per stream item; ARGV[8] "1": the writes go to the AOF and to
# replicas (REQUEST_LOG_DURABLE), else they stay in memory (and RDB snapshots): a best-effort log
# need not double Redis's work per request; ARGV[9] the seconds a bucket spans; ARGV[10] the time
# now (seconds); ARGV[11] each entry's key and packed value, alternating, joined by "\x1e"
# (`schema.ENTRIES`): one HSET per run of entries in one bucket stores them. A bucket expires the
# retention after its first second, so no entry outlives the retention (and not before a bucket's
# span from now: an entry that began longer ago than the retention, a long WebSocket, is still seen
# live). The stream carries entry keys only, a batch's in one item (up to STREAM_CHUNK, space-
# separated: keys hold no spaces); its readers fetch the entries. The stream keeps about
# LOG_STREAM_MAXLEN entries: as many items as this batch's make that many. Long argument lists go in
# slices (Lua's unpack has a limit).
WRITE_BATCH = """
if ARGV[8] ~= '1' then
  if redis.replicate_commands then redis.replicate_commands() end
  redis.set_repl(redis.REPL_NONE)
end
local batch = cjson.decode(ARGV[1])
local retention = tonumber(ARGV[2])
local maxlen = ARGV[3]
local limit, slack = tonumber(ARGV[4]), tonumber(ARGV[5])
local span, now = tonumber(ARGV[9]), tonumber(ARGV[10])
local n = batch.n
local counter = ARGV[12]
local function sliced(command, key, list, width)
  for start = 1, #list, width do
    redis.call(command, key, unpack(list, start, math.min(start + width - 1, #list)))
  end
end
local parts, joined, from = {}, ARGV[11], 1
for part = 1, 2 * n do
  local stop = string.find(joined, '\\30', from, true) or (#joined + 1)
  parts[part] = string.sub(joined, from, stop - 1)
  from = stop + 1
end
for _, run in ipairs(batch.runs) do
  for start = run[2], run[3], 500 do
    local last = math.min(start + 499, run[3])
    redis.call('HSET', run[1], unpack(parts, 2 * start - 1, 2 * last))
  end
end
for bucket, second in pairs(batch.buckets) do
  redis.call('EXPIREAT', bucket, math.max(second + retention, now + span))
end
local keys = {}
for position = 1, n do
  keys[position] = parts[2 * position - 1]
end
local chunk = tonumber(ARGV[7])
for start = 1, n, chunk do
  local last = math.min(start + chunk - 1, n)
  local items = math.max(1, math.floor(maxlen / (last - start + 1)))
  redis.call('XADD', 'stream:requests', 'MAXLEN', '~', items, '*',
    'keys', table.concat(keys, ' ', start, last))
end
if n > 0 then
  redis.call('EXPIRE', 'stream:requests', retention)
end
local touched, order = {}, {}
for _, group in ipairs(batch.groups) do
  local indexes, chunks = group[1], group[2]
  for _, index in ipairs(indexes) do
    if touched[index] == nil then
      local held = redis.call('ZSCORE', index, counter)
      touched[index] = held and tonumber(held) or redis.call('ZCARD', index)
      order[#order + 1] = index
    end
  end
  for _, chunk in ipairs(chunks) do
    local positions = chunk[2]
    local first, count = positions[1], #positions
    local member
    if positions[count] - first + 1 == count then
      member = table.concat(keys, ' ', first, first + count - 1)
    else
      local listed = {}
      for k, position in ipairs(positions) do
        listed[k] = keys[position]
      end
      member = table.concat(listed, ' ')
    end
    for _, index in ipairs(indexes) do
      redis.call('ZADD', index, chunk[1], member)
      touched[index] = touched[index] + count
    end
  end
end
local function trimmed(index, held)
  local skipped, width = 0, math.ceil((held - limit) / tonumber(ARGV[13]))
  while held > limit do
    local oldest = redis.call('ZRANGE', index, skipped, skipped + width - 1)
    width = math.min(2 * width, 64)
    local dropped, full = {}, false
    for _, member in ipairs(oldest) do
      if string.sub(member, 1, 4) ~= 'req:' then
        skipped = skipped + 1
      else
        local _, spaces = string.gsub(member, ' ', '')
        if held - spaces - 1 < limit then
          full = true
          break
        end
        held = held - spaces - 1
        dropped[#dropped + 1] = member
      end
    end
    if #dropped > 0 then
      redis.call('ZREM', index, unpack(dropped))
    end
    if full or #oldest == 0 then
      break
    end
  end
  return held
end
for _, index in ipairs(order) do
  local held = touched[index]
  if held > limit + slack then
    held = trimmed(index, held)
  end
  redis.call('ZADD', index, held, counter)
  redis.call('EXPIRE', index, retention)
end
for key, count in pairs(batch.counters) do
  redis.call('INCRBY', key, count)
  redis.call('EXPIRE', key, retention)
end
for key, addresses in pairs(batch.visitors) do
  sliced('PFADD', key, addresses, 1000)
  redis.call('EXPIRE', key, retention)
end
for key, values in pairs(batch.durations) do
  sliced('LPUSH', key, values, 1000)
  redis.call('LTRIM', key, 0, tonumber(ARGV[6]) - 1)
  redis.call('EXPIRE', key, retention)
end
return n
"""


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
        the keys of up to `schema.INDEX_CHUNK` entries and is scored by the newest one's time:
        every member from `since` on is read (an index lists at most `schema.INDEX_LIMIT` +
        `schema.INDEX_SLACK` + `schema.INDEX_CHUNK` entries), and its keys sorted."""
        found = await self._redis.zrange(
            index, math.inf, since, sortby=PureToken.BYSCORE, rev=True, offset=0,
            count=schema.INDEX_LIMIT + schema.INDEX_SLACK + schema.INDEX_CHUNK,
        )  # fmt: skip
        keys = [
            key
            for member in found
            if str(member).startswith("req:")
            for key in str(member).split(" ")
            if schema.time_of(key) >= since
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
