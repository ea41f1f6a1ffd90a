"""The embedded Redis answers `LOADING` while it reads its data back after a restart; the
supervisor waits for the load instead of ending the gateway with "cannot reach Redis"."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import coredis
import trio

from oauthproxy.storage.embedded import EmbeddedRedis, serve_embedded_redis
from tests.eventually import eventually

KEYS = 2_000
# The server's own test knob: microseconds it waits per key while loading, so 2,000 keys take
# about a second to load on any machine (a data set that large would cost the suite far more).
KEY_LOAD_DELAY_MICROSECONDS = 500


def _client(url: str) -> coredis.Redis[str]:
    return coredis.Redis.from_url(url, decode_responses=True)


async def _fill_and_slow_down_loading(url: str) -> None:
    async with _client(url) as client:
        await client.mset({f"k:{i}": "v" for i in range(KEYS)})
        # ...and answers clients (`LOADING`) every 1,024 bytes read instead of every 2 MiB.
        await client.config_set(
            {
                "key-load-delay": KEY_LOAD_DELAY_MICROSECONDS,
                "loading-process-events-interval-bytes": 1024,
            }
        )
        await client.config_rewrite()  # the restarted server reads the same config file
        # The delay applies to RDB loading: move the keys into the append-only file's RDB base.
        await client.bgrewriteaof()

        async def rewritten() -> bool:
            info = await client.info("persistence")
            return not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])

        await eventually(rewritten, what="the append-only file rewritten")


async def _key_count(url: str) -> int:
    async with _client(url) as client:
        return await client.dbsize()


async def _pid(url: str) -> int:
    async with _client(url) as client:
        info = await client.info("server")
        return int(str(info["process_id"]))


async def test_a_restarted_server_still_loading_its_data_is_waited_for(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        redis: EmbeddedRedis = await nursery.start(
            lambda task_status: serve_embedded_redis(tmp_path / "redis", task_status=task_status)
        )
        await _fill_and_slow_down_loading(redis.url)
        os.kill(redis.pid, signal.SIGKILL)

        # Before the fix, the supervisor's first PING got `LOADING` and its BusyLoadingError
        # ended serve_embedded_redis (and the gateway with it) instead of waiting.
        async def back_with_its_data() -> bool:
            pid, keys = redis.pid, 0
            try:
                pid, keys = await _pid(redis.url), await _key_count(redis.url)
            except* (coredis.exceptions.ConnectionError, OSError):
                pass  # not up yet, or still loading (which a client sees as BusyLoadingError)
            return pid != redis.pid and keys == KEYS

        await eventually(back_with_its_data, what="the server back with its data", within=30)
        nursery.cancel_scope.cancel()
