"""The workflow consumer groups of workers that no longer run are removed (with their consumer
entries and per-hostname states), and no live replica's group ever is: the decision row by row,
then WORKERS=2 for real on the session's Redis with leftovers of an earlier run, a live replica
whose name looks like one of our workers, a worker killed and started again, and the parent
restarted."""

from __future__ import annotations

import json
import os
import secrets
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from oauthproxy.storage import Storage, keys, open_storage
from oauthproxy.storage.replica_traces import ReplicaTrace, ReplicaTraces
from oauthproxy.workers.leftovers import STALE_SECONDS, leftovers
from tests.eventually import eventually
from tests.test_drain import GUARD_SECONDS, _environment
from tests.test_process import started_gateway
from tests.test_workers import _workers

NOW = datetime(2026, 12, 4, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=1)


@pytest.mark.parametrize(
    ("trace", "workers", "removed"),
    [
        (ReplicaTrace("gw-0", None, None), 2, False),  # a worker that runs now
        (ReplicaTrace("gw-1", STALE_SECONDS * 9, LONG_AGO), 2, False),
        (ReplicaTrace("gw-2", STALE_SECONDS, LONG_AGO), 2, True),  # WORKERS was 3
        (ReplicaTrace("gw-2", STALE_SECONDS - 1, LONG_AGO), 2, False),  # someone reads through it
        (ReplicaTrace("gw-2", None, NOW), 2, False),  # joined just now, reads soon
        (ReplicaTrace("gw-2", None, LONG_AGO), 2, True),
        (ReplicaTrace("gw-2", None, None), 2, True),
        (ReplicaTrace("gw", None, None), 2, True),  # WORKERS was 1
        (ReplicaTrace("gw", None, None), 1, False),  # the single process that runs now
        (ReplicaTrace("gw-0", None, None), 1, True),  # WORKERS was 2
        (ReplicaTrace("gw-64", None, None), 2, False),  # beyond MAX_WORKERS: not a worker's name
        (ReplicaTrace("gw-a", None, None), 2, False),
        (ReplicaTrace("gw2-1", None, None), 2, False),
        (ReplicaTrace("other", None, None), 2, False),
    ],
)
def test_which_traces_are_left_over(trace: ReplicaTrace, workers: int, removed: bool) -> None:
    assert leftovers([trace], "gw", workers, NOW) == ([trace.replica] if removed else [])


async def _groups(storage: Storage, prefix: str) -> set[str]:
    groups = await storage.redis.xinfo_groups(keys.EVENTS_WORKFLOW)
    names = (str(group["name"]).removeprefix(f"{keys.WORKFLOW_GROUP}:") for group in groups)
    return {name for name in names if name.startswith(prefix)}


async def _join(storage: Storage, replica: str, seen_at: datetime | None) -> None:
    group = f"{keys.WORKFLOW_GROUP}:{replica}"
    await storage.redis.xgroup_create(keys.EVENTS_WORKFLOW, group, identifier="$", mkstream=True)
    if seen_at is not None:
        info = json.dumps({"group": group, "seen_at": seen_at.isoformat()})
        await storage.redis.hset(keys.WORKFLOW_CONSUMER_INFO, {replica: info})


async def _read_as(storage: Storage, replica: str) -> None:
    """A live replica: reads through its group, as the workflow consumer does."""
    group = f"{keys.WORKFLOW_GROUP}:{replica}"
    while True:
        await storage.redis.xreadgroup(
            group, replica, streams={keys.EVENTS_WORKFLOW: ">"}, count=1, block=500
        )


async def test_leftover_groups_go_and_live_ones_stay_across_worker_and_parent_restarts(
    tmp_path: Path, nursery: trio.Nursery, storage: Storage, redis_url: str
) -> None:
    gateway_id = f"leftovers-{secrets.token_hex(3)}"
    earlier, single, live, other = (
        f"{gateway_id}-5",
        gateway_id,
        f"{gateway_id}-7",
        f"{gateway_id}x-3",
    )
    await _join(storage, earlier, LONG_AGO)  # WORKERS was 6 in an earlier run
    await _join(storage, single, None)  # and 1 before that
    await _join(storage, other, LONG_AGO)  # another gateway's, stopped long ago: not ours
    await _join(storage, live, NOW)  # a live replica whose name looks like a worker's
    nursery.start_soon(_read_as, storage, live)
    state = keys.workflow_state(f"{gateway_id}.example.com")
    await storage.redis.hset(state, {earlier: "{}", other: "{}"})

    env = {
        **_environment(tmp_path / "data", redis_url),
        "WORKERS": "2",
        "GATEWAY_ID": gateway_id,
    }
    running = {f"{gateway_id}-0", f"{gateway_id}-1"}
    expected = {*running, live, other}

    async def swept() -> bool:
        return await _groups(storage, gateway_id) == expected

    async with started_gateway(tmp_path / "data", tmp_path, env) as gateway:
        await eventually(swept, what="the leftover groups removed", within=GUARD_SECONDS)
        info = await storage.redis.hgetall(keys.WORKFLOW_CONSUMER_INFO)
        assert {earlier, single} & set(info) == set()
        assert running | {other} <= set(info)
        assert set(await storage.redis.hgetall(state)) == {other}

        parent = gateway.process.pid
        killed = min(_workers(parent))
        os.kill(killed, signal.SIGKILL)

        async def replaced() -> bool:
            now = _workers(parent)
            return len(now) == 2 and killed not in now

        await eventually(replaced, what="the killed worker replaced", within=60)
        await eventually(swept, what="the groups after a worker restart", within=GUARD_SECONDS)

        gateway.process.send_signal(signal.SIGTERM)
        with trio.fail_after(GUARD_SECONDS):
            assert await gateway.process.wait() == 0

    async with started_gateway(tmp_path / "data", tmp_path, env):
        await eventually(swept, what="the groups after the parent restarted", within=GUARD_SECONDS)
        assert await _groups(storage, gateway_id) == expected

    nursery.cancel_scope.cancel()
    for replica in (live, other, *running):
        await storage.redis.xgroup_destroy(keys.EVENTS_WORKFLOW, f"{keys.WORKFLOW_GROUP}:{replica}")
    await storage.redis.hdel(keys.WORKFLOW_CONSUMER_INFO, [live, other, *running])
    await storage.redis.delete([state])


async def test_a_single_process_removes_what_the_workers_of_an_earlier_run_left(
    tmp_path: Path, nursery: trio.Nursery, storage: Storage, redis_url: str
) -> None:
    """WORKERS=1 after a run with more: the old workers' groups, consumer entries and
    per-hostname states go; its own group, a live replica's and another gateway's stay."""
    gateway_id = f"single-{secrets.token_hex(3)}"
    earlier = [f"{gateway_id}-0", f"{gateway_id}-1"]
    live, other = f"{gateway_id}-2", f"{gateway_id}x-0"
    for replica in earlier:
        await _join(storage, replica, LONG_AGO)
    await _join(storage, other, LONG_AGO)
    await _join(storage, live, NOW)
    nursery.start_soon(_read_as, storage, live)
    state = keys.workflow_state(f"{gateway_id}.example.com")
    await storage.redis.hset(state, {earlier[0]: "{}", other: "{}"})
    env = {**_environment(tmp_path / "data", redis_url), "WORKERS": "1", "GATEWAY_ID": gateway_id}
    expected = {gateway_id, live, other}

    async def swept() -> bool:
        return await _groups(storage, gateway_id) == expected

    async with started_gateway(tmp_path / "data", tmp_path, env):
        await eventually(swept, what="the earlier workers' groups removed", within=GUARD_SECONDS)
        info = await storage.redis.hgetall(keys.WORKFLOW_CONSUMER_INFO)
        assert set(earlier) & set(info) == set()
        assert set(await storage.redis.hgetall(state)) == {other}

    nursery.cancel_scope.cancel()
    for replica in (live, other, gateway_id):
        await storage.redis.xgroup_destroy(keys.EVENTS_WORKFLOW, f"{keys.WORKFLOW_GROUP}:{replica}")
    await storage.redis.hdel(keys.WORKFLOW_CONSUMER_INFO, [live, other, gateway_id])
    await storage.redis.delete([state])


async def test_a_replica_is_forgotten_in_one_step(storage: Storage, redis_url: str) -> None:
    """Pins a CI failure: the group was destroyed, then the keyspace scanned for states (several
    round trips), and only then the consumer entry removed; a reader in between (the sweep test's
    check) saw the group gone and the entry still there. Another connection watches throughout."""
    replica = f"forgotten-{secrets.token_hex(3)}"
    await _join(storage, replica, LONG_AGO)
    states = [keys.workflow_state(f"h{number}.forgotten.example") for number in range(3000)]
    async with storage.redis.pipeline(transaction=False) as pipe:
        for state in states:
            pipe.hset(state, {replica: "{}"})
    group = f"{keys.WORKFLOW_GROUP}:{replica}"
    seen: set[tuple[bool, bool, bool]] = set()

    async def watch(done: trio.Event) -> None:
        async with open_storage(redis_url) as watcher:
            while not done.is_set():
                async with watcher.redis.pipeline(transaction=True) as pipe:
                    groups = pipe.xinfo_groups(keys.EVENTS_WORKFLOW)
                    entry = pipe.hexists(keys.WORKFLOW_CONSUMER_INFO, replica)
                    state = pipe.hexists(states[-1], replica)
                names = {str(found["name"]) for found in await groups}
                seen.add((group in names, await entry, await state))

    done = trio.Event()
    async with trio.open_nursery() as watching:
        watching.start_soon(watch, done)
        await trio.sleep(0.05)
        await ReplicaTraces(storage.redis).forget(replica)
        await trio.sleep(0.05)
        done.set()
    assert seen == {(True, True, True), (False, False, False)}
    assert await storage.redis.exists(states) == 0
