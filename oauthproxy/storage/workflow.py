"""The workflow stream as a consumer sees it: a consumer group per gateway replica.

`events:workflow` is written by the API (see `events.py`). Every replica reads every event through
its own group `workflow-group:{replica}`, acknowledges after acting, and takes back entries that
stayed pending too long (a crash between read and ack). It records what it did per hostname in
`workflow:state:{hostname}` (a hash: replica → state), what it is working on in the set
`workflow:pending`, and itself in the hash `workflow:consumer:info`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import coredis.exceptions

from oauthproxy.models.common import utcnow
from oauthproxy.models.events import WorkflowEvent
from oauthproxy.storage import keys
from oauthproxy.storage.base import Redis, translate_errors
from oauthproxy.storage.events import parse_event

BLOCK_MILLISECONDS = 1000
BATCH = 100


@dataclass(frozen=True)
class Delivery:
    entry_id: str
    event: WorkflowEvent


def _deliveries(entries: object) -> list[Delivery]:
    found = []
    for entry in entries:  # type: ignore[attr-defined]
        try:
            found.append(Delivery(str(entry.identifier), parse_event(entry.field_values)))
        except (KeyError, ValueError):
            continue  # an entry we cannot read is skipped (and acknowledged by the caller)
    return found


@translate_errors
class WorkflowConsumer:
    def __init__(self, redis: Redis, replica: str) -> None:
        self._redis = redis
        self.replica = replica
        self.group = f"{keys.WORKFLOW_GROUP}:{replica}"

    async def join(self) -> None:
        """Create this replica's group (at the stream's end) unless it exists; announce it."""
        with contextlib.suppress(coredis.exceptions.StreamDuplicateConsumerGroupError):
            await self._redis.xgroup_create(
                keys.EVENTS_WORKFLOW, self.group, identifier="$", mkstream=True
            )
        await self._redis.hset(
            keys.WORKFLOW_CONSUMER_INFO,
            {self.replica: json.dumps({"group": self.group, "seen_at": utcnow().isoformat()})},
        )

    async def read(self) -> list[Delivery]:
        """New events for this replica, waiting up to a second for some."""
        reply = await self._redis.xreadgroup(
            self.group,
            self.replica,
            streams={keys.EVENTS_WORKFLOW: ">"},
            count=BATCH,
            block=BLOCK_MILLISECONDS,
        )
        if not reply:
            return []
        return [d for entries in reply.values() for d in _deliveries(entries)]

    async def reclaim(self, min_idle_milliseconds: int) -> list[Delivery]:
        """Entries delivered to this group but never acknowledged (a crash in between)."""
        reply = await self._redis.xautoclaim(
            keys.EVENTS_WORKFLOW,
            self.group,
            self.replica,
            min_idle_milliseconds,
            "0-0",
            count=BATCH,
        )
        return _deliveries(reply[1])

    async def ack(self, deliveries: list[Delivery]) -> None:
        if deliveries:
            await self._redis.xack(
                keys.EVENTS_WORKFLOW, self.group, [d.entry_id for d in deliveries]
            )

    async def mark_pending(self, hostnames: set[str]) -> None:
        if hostnames:
            await self._redis.sadd(keys.WORKFLOW_PENDING, list(hostnames))

    async def settled(self, hostnames: set[str]) -> None:
        """A batch's hostnames are handled, whether or not anything started, changed or stopped
        for them (`record` takes only those that did): one that needed nothing stayed pending for
        ever, and an owner making and deleting proxies grew the set without bound."""
        if hostnames:
            await self._redis.srem(keys.WORKFLOW_PENDING, list(hostnames))

    async def record(self, states: Mapping[str, str | None]) -> None:
        """What this replica now runs for each hostname (None: nothing any more), and that the
        hostname is no longer pending."""
        if not states:
            return
        stamp = utcnow().isoformat()
        async with self._redis.pipeline(transaction=False) as pipe:
            for hostname, state in states.items():
                if state is None:
                    pipe.hdel(keys.workflow_state(hostname), [self.replica])
                else:
                    value = json.dumps({"state": state, "updated_at": stamp})
                    pipe.hset(keys.workflow_state(hostname), {self.replica: value})
            pipe.srem(keys.WORKFLOW_PENDING, list(states))
