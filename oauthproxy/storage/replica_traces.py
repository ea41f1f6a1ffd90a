"""What a replica leaves in Redis by following the workflow stream (`workflow.py`): its consumer
group `workflow-group:{replica}`, its entry in `workflow:consumer:info`, and its field in each
`workflow:state:{hostname}`. Read and removed here for the worker pool's sweep of workers that
no longer run (`workers/leftovers.py` decides which)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import coredis.exceptions

from oauthproxy.storage import keys
from oauthproxy.storage.base import Redis, scan_keys, translate_errors


@dataclass(frozen=True)
class ReplicaTrace:
    replica: str
    idle_seconds: float | None
    """How long the least idle consumer of its group has not read (a live replica reads every
    second); None: its group has no consumer, or it has no group."""
    joined_at: datetime | None
    """When it last joined its group (`workflow:consumer:info`); None: not recorded."""


@translate_errors
class ReplicaTraces:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def read(self) -> list[ReplicaTrace]:
        """Every replica with a group or a `workflow:consumer:info` entry."""
        joined = {
            replica: _joined_at(info)
            for replica, info in (await self._redis.hgetall(keys.WORKFLOW_CONSUMER_INFO)).items()
        }
        idle: dict[str, float | None] = dict.fromkeys(joined)
        prefix = f"{keys.WORKFLOW_GROUP}:"
        for group in await self._groups():
            name = str(group.get("name", ""))
            if not name.startswith(prefix):
                continue
            consumers = await self._redis.xinfo_consumers(keys.EVENTS_WORKFLOW, name)
            idles = [int(consumer.get("idle") or 0) / 1000 for consumer in consumers]
            idle[name.removeprefix(prefix)] = min(idles) if idles else None
        return [ReplicaTrace(name, idle[name], joined.get(name)) for name in sorted(idle)]

    async def forget(self, replica: str) -> None:
        """Remove the replica's group, its consumer entry and its per-hostname states in one
        transaction: no reader sees the group gone and the rest still there."""
        states = await scan_keys(self._redis, keys.workflow_state("*"))
        stream = await self._redis.exists([keys.EVENTS_WORKFLOW])
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.WORKFLOW_CONSUMER_INFO, [replica])
            for key in states:
                pipe.hdel(key, [replica])
            if stream:  # the stream is never deleted once made; without it there is no group
                pipe.xgroup_destroy(keys.EVENTS_WORKFLOW, f"{keys.WORKFLOW_GROUP}:{replica}")

    async def _groups(self) -> tuple[dict[str, str | int | None], ...]:
        try:
            return await self._redis.xinfo_groups(keys.EVENTS_WORKFLOW)
        except coredis.exceptions.ResponseError as error:
            if "no such key" in str(error).lower():
                return ()  # no stream yet: no group either
            raise


def _joined_at(info: str) -> datetime | None:
    try:
        return datetime.fromisoformat(json.loads(info)["seen_at"])
    except (ValueError, KeyError, TypeError):
        return None
