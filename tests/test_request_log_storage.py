"""The write script and the readers on a real Redis: entries read back whole (the fields their key
holds and the default values filled in) from their bucket, entries stored as hashes of their own
(before buckets) still read, buckets expiring with the retention, the live stream in items of up
to STREAM_CHUNK keys read without skipping or repeating an entry, indexes capped at their newest
INDEX_LIMIT entries (also those written when a member held one key), and the durable and the
default (AOF-less) writes alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from pydantic import ValidationError

from oauthproxy.logs import queries, schema
from oauthproxy.logs.logger import MEMORY_CHECK_SECONDS, RequestLogger
from oauthproxy.logs.queries import LogFilter
from oauthproxy.logs.records import RequestEntry
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage


def entries(count: int, *, start: float = 1_700_000_000.0) -> list[RequestEntry]:
    made = []
    for number in range(count):
        entry = RequestEntry(
            started=start + number / 1000,
            clock=0.0,
            client_ip="203.0.113.7",
            scheme=b"http",
            host="store.example.com",
            method=b"GET",
            target=f"/n/{number}".encode(),
            status=200,
            upstream="http://127.0.0.1:3000",
            duration=0.002,
        )
        made.append(entry)
    return made


async def write(storage: Storage, batch: list[RequestEntry], *, durable: bool = False) -> None:
    plan = schema.plan(batch, first_sequence=0, slow_seconds=1)
    await storage.request_logs.write(
        schema.encoded(plan), retention=3600, stream_maxlen=100_000, durable=durable
    )


@pytest.mark.parametrize("durable", [False, True])
async def test_entries_read_back_whole(storage: Storage, durable: bool) -> None:
    await write(storage, entries(3), durable=durable)
    keys = await storage.request_logs.keys_in(schema.host_index("store.example.com"), 0, limit=10)
    assert keys[0] == "req:1700000000.002000-2:203.0.113.7"  # newest first
    assert await storage.log_redis.exists([keys[0]]) == 0  # no key of its own: a bucket's field
    packed = await storage.log_redis.hget("req:1700000000", keys[0])
    assert packed is not None and "1700000000.002000" not in packed  # the key holds the time
    (entry,) = await storage.request_logs.entries(keys[:1])
    assert entry == {
        "timestamp": "1700000000.002000",
        "client_ip": "203.0.113.7",
        "scheme": "http",
        "method": "GET",
        "kind": "http",
        "hostname": "store.example.com",
        "request_path": "/n/2",
        "status": "200",
        "bytes_in": "0",
        "bytes_out": "0",
        "duration_ms": "2.000",
        "upstream": "http://127.0.0.1:3000",
    }


async def test_the_stream_in_items_loses_and_repeats_nothing(storage: Storage) -> None:
    await write(storage, entries(250))  # three stream items: 100, 100, 50 keys
    newest = await storage.request_logs.latest(count=5)
    assert [entry["request_path"] for _id, entry in newest] == [f"/n/{n}" for n in (249, 248,
            247, 246, 245)]  # fmt: skip
    seen: list[str] = []
    last = "0-0"
    while found := await storage.request_logs.following(last, count=30):
        seen += [entry["request_path"] for _id, entry in found]
        last = found[-1][0]
    assert seen == [f"/n/{n}" for n in range(250)]


async def test_indexes_keep_their_newest_entries(storage: Storage) -> None:
    """An index lists its entries in members of up to INDEX_CHUNK keys, and keeps at least its
    newest INDEX_LIMIT entries (whole members go, oldest first, once it lists INDEX_SLACK more)."""
    total = schema.INDEX_LIMIT + schema.INDEX_SLACK + 1
    for first in range(0, total, 1000):
        await write(storage, entries(min(1000, total - first), start=1_700_000_000.0 + first))
    members = await storage.log_redis.zcard(schema.ALL)
    assert members == schema.INDEX_LIMIT // schema.INDEX_CHUNK + 2  # and the count
    held = await storage.request_logs.keys_in(schema.ALL, 0, limit=10 * total)
    assert len(held) == await storage.log_redis.zscore(schema.ALL, schema.COUNT) == 5001
    assert held[0] == "req:1700005000.500000-500:203.0.113.7"  # the newest stayed
    assert held[-1] == "req:1700000000.500000-500:203.0.113.7"  # the oldest 500 went
    keys = await storage.request_logs.keys_in(schema.ALL, 1_700_005_000.4, limit=1)
    assert keys == ["req:1700005000.500000-500:203.0.113.7"]


async def test_indexes_written_before_chunks_are_counted_and_trimmed(storage: Storage) -> None:
    """An index of one key per member (before chunks, no count) reads as before, and is counted
    and trimmed by entries at the next write."""
    old: dict[str | bytes, float] = {
        f"req:1600000000.{n:06d}-0:203.0.113.7": 1_600_000_000 + n / 1e6 for n in range(5400)
    }
    await storage.log_redis.zadd(schema.host_index("store.example.com"), old)
    index = schema.host_index("store.example.com")
    assert len(await storage.request_logs.keys_in(index, 0, limit=6000)) == 5400
    await write(storage, entries(150))
    held = await storage.request_logs.keys_in(index, 0, limit=6000)
    assert len(held) == await storage.log_redis.zscore(index, schema.COUNT) == schema.INDEX_LIMIT
    assert held[0] == "req:1700000000.149000-149:203.0.113.7"
    assert held[-1] == "req:1600000000.000550-0:203.0.113.7"  # the oldest 550 went


async def test_stream_items_of_one_key_each_still_read(storage: Storage) -> None:
    """Items written before batches shared one (`key`, one entry each) are read too."""
    await write(storage, entries(2))
    old_style = "req:1700000000.001000-1:203.0.113.7"
    await storage.log_redis.xadd(schema.STREAM, {"key": old_style})
    newest = await storage.request_logs.latest(count=2)
    assert [entry["request_path"] for _id, entry in newest] == ["/n/1", "/n/1"]


async def test_entries_stored_as_hashes_of_their_own_still_read(storage: Storage) -> None:
    """An entry written before buckets (a hash per entry, empty and default fields left out)
    reads as it did, next to entries in buckets."""
    await write(storage, entries(1))
    old = "req:1700000000.000500-7:198.51.100.9"
    await storage.log_redis.hset(old, {"hostname": "store.example.com", "status": "404"})
    keys = ["req:1700000000.000000-0:203.0.113.7", old, "req:1700000000.000900-8:198.51.100.9"]
    first, second, gone = await storage.request_logs.entries_in_order(keys)
    assert first["request_path"] == "/n/0" and gone == {}
    assert second == {"timestamp": "1700000000.000500", "client_ip": "198.51.100.9",
                      "scheme": "http", "method": "GET", "kind": "http",
                      "hostname": "store.example.com", "status": "404"}  # fmt: skip


async def test_buckets_expire_with_the_retention(storage: Storage) -> None:
    """A bucket lives the retention from its first second: no entry outlives the retention;
    one that began longer ago than that (a long stream) still lives a bucket's span."""
    now = time.time()
    await write(storage, entries(1, start=now))
    recent = schema.bucket(now)
    assert 3600 - schema.BUCKET_SECONDS <= await storage.log_redis.ttl(recent) <= 3600
    await write(storage, entries(1))  # 2023: long past the retention
    assert 0 < await storage.log_redis.ttl("req:1700000000") <= schema.BUCKET_SECONDS


async def test_an_owners_query_reads_the_newest_entries_of_all_its_hostnames_together(
    storage: Storage,
) -> None:
    """An owner's query reads one index per hostname it owns: with SCAN_LIMIT keys from each,
    an owner of 50 hostnames made one query fetch and filter 250,000 entries (50 times the
    admin's most), in the process that serves the API and, with WORKERS=1, the proxies too.
    Now the owner's indexes together yield their newest SCAN_LIMIT, as the admin's one does:
    an entry older than those is not read, however many hostnames the owner has."""
    old = entries(queries.SCAN_LIMIT)  # one hostname's SCAN_LIMIT, all older than the other's
    new = [replace(entry, host="new.example.com", started=entry.started + 3600) for entry in old]
    for batch in (old, new):
        for first in range(0, len(batch), 1000):
            await write(storage, batch[first : first + 1000])
    owned = {"store.example.com": 0.0, "new.example.com": 0.0}
    oldest = LogFilter(hours=1e6, hosts=owned, words=("/n/0",), limit=1000)
    found = await queries.search(storage.request_logs, oldest, slow_seconds=1)
    assert {entry["hostname"] for entry in found} == {"new.example.com"}
    newest = await queries.search(storage.request_logs, replace(oldest, words=()), slow_seconds=1)
    assert len(newest) == 1000 and newest[0]["request_path"] == f"/n/{queries.SCAN_LIMIT - 1}"


async def test_over_the_memory_cap_batches_are_dropped_and_counted_until_redis_has_room(
    storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    """A flood of requests cannot fill the Redis that holds the gateway's state: over
    LOG_MAX_REDIS_MEMORY_MB the logger drops whole batches (counted), and writes again once
    Redis uses less (here: once the cap is raised above what it uses)."""
    settings = make_settings(log_max_redis_memory_mb=1)
    used = await storage.request_logs.memory()
    logger = RequestLogger.of(settings)
    assert logger.max_redis_memory == 1024 * 1024
    logger.max_redis_memory = used // 2  # surely over: Redis uses `used` bytes already
    for entry in entries(5):
        logger.record(entry)
    await logger.flush(storage, settings)
    assert (logger.dropped, logger.written, logger.over_memory) == (5, 0, True)
    assert (
        await storage.request_logs.keys_in(schema.host_index("store.example.com"), 0, limit=10)
        == []
    )

    logger.max_redis_memory = used * 10
    for entry in entries(3):
        logger.record(entry)
    await logger.flush(storage, settings)  # within MEMORY_CHECK_SECONDS: not asked again
    assert (logger.dropped, logger.written) == (8, 0)
    logger._memory_asked_at -= MEMORY_CHECK_SECONDS
    for entry in entries(3):
        logger.record(entry)
    await logger.flush(storage, settings)
    assert (logger.dropped, logger.written, logger.over_memory) == (8, 3, False)
    assert (
        len(await storage.request_logs.keys_in(schema.host_index("store.example.com"), 0, limit=10))
        == 3
    )


def test_the_memory_cap_is_a_setting_in_mib_and_0_turns_it_off(
    make_settings: Callable[..., Settings],
) -> None:
    assert RequestLogger.of(make_settings()).max_redis_memory == 512 * 1024 * 1024
    assert RequestLogger.of(make_settings(log_max_redis_memory_mb=0)).max_redis_memory == 0
    with pytest.raises(ValidationError, match="log_max_redis_memory_mb"):
        make_settings(log_max_redis_memory_mb=-1)
