"""The write script and the readers on a real Redis: entries read back whole (the fields their
key holds and the default values filled in), the live stream in items of up to STREAM_CHUNK
keys read without skipping or repeating an entry, indexes capped at their newest INDEX_LIMIT,
and the durable and the default (AOF-less) writes alike."""

from __future__ import annotations

import pytest

from oauthproxy.logs import schema
from oauthproxy.logs.records import RequestEntry
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
    stored = await storage.log_redis.hgetall(keys[0])
    assert "timestamp" not in stored and "method" not in stored  # in its key; a default
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


async def test_indexes_keep_their_newest_members(storage: Storage) -> None:
    total = schema.INDEX_LIMIT + schema.INDEX_SLACK + 1
    for first in range(0, total, 1000):
        await write(storage, entries(min(1000, total - first), start=1_700_000_000.0 + first))
    held = await storage.log_redis.zcard(schema.ALL)
    assert held == schema.INDEX_LIMIT
    keys = await storage.request_logs.keys_in(schema.ALL, 0, limit=1)
    assert keys[0] == "req:1700005000.500000-500:203.0.113.7"  # the newest stayed


async def test_stream_items_of_one_key_each_still_read(storage: Storage) -> None:
    """Items written before batches shared one (`key`, one entry each) are read too."""
    await write(storage, entries(2))
    old_style = "req:1700000000.001000-1:203.0.113.7"
    await storage.log_redis.xadd(schema.STREAM, {"key": old_style})
    newest = await storage.request_logs.latest(count=2)
    assert [entry["request_path"] for _id, entry in newest] == ["/n/1", "/n/1"]
