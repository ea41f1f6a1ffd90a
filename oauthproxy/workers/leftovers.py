"""Workers that no longer run leave their workflow consumer group behind (and their consumer
entry and per-hostname states: `storage/replica_traces.py`); the parent removes them at start-up,
after a worker is started again, and every `SWEEP_SECONDS`.

Which traces are a worker's that no longer runs (`leftovers`, pure): a worker is named
`{replica}-{index}` after the gateway's replica name (`worker_name`), and the single process of
WORKERS=1 is `{replica}`. A trace is this gateway's when it has one of these names; it is left
over when it is not one of the workers that run now and nobody has read through its group for
`STALE_SECONDS` (a live replica reads every second). So another gateway's group is never taken
for ours, whatever the names: a live one reads, and only a group nobody has read from for that
long is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

import trio

from oauthproxy.errors import StorageUnavailable
from oauthproxy.settings import MAX_WORKERS
from oauthproxy.storage.replica_traces import ReplicaTrace, ReplicaTraces

log = logging.getLogger(__name__)

STALE_SECONDS = 30.0
SWEEP_SECONDS = 60.0


def worker_name(replica: str, index: int) -> str:
    """Worker `index`'s replica name (its consumer group is `workflow-group:{name}`)."""
    return f"{replica[:120]}-{index}"


def leftovers(
    traces: Iterable[ReplicaTrace], replica: str, workers: int, now: datetime
) -> list[str]:
    """The replica names among `traces` that are this gateway's workers (or its single
    process) that no longer run: the ones to remove."""
    running = (
        {worker_name(replica, index) for index in range(workers)} if workers > 1 else {replica}
    )
    return [
        trace.replica
        for trace in traces
        if trace.replica not in running and _ours(trace.replica, replica) and _quiet(trace, now)
    ]


def _ours(name: str, replica: str) -> bool:
    if name == replica:
        return True
    prefix = replica[:120] + "-"
    index = name.removeprefix(prefix)
    return name.startswith(prefix) and index.isdigit() and int(index) < MAX_WORKERS


def _quiet(trace: ReplicaTrace, now: datetime) -> bool:
    if trace.idle_seconds is not None:
        return trace.idle_seconds >= STALE_SECONDS
    return trace.joined_at is None or (now - trace.joined_at).total_seconds() >= STALE_SECONDS


class Sweeper:
    """Sweeps at once, every `SWEEP_SECONDS`, and soon after each `poke` (a worker started
    again)."""

    def __init__(self, traces: ReplicaTraces, replica: str, workers: int) -> None:
        self._traces = traces
        self._replica = replica
        self._workers = workers
        self._poked = trio.Event()

    def poke(self) -> None:
        self._poked.set()

    async def run(self) -> None:
        while True:
            await self.sweep()
            self._poked = trio.Event()
            with trio.move_on_after(SWEEP_SECONDS):
                await self._poked.wait()

    async def sweep(self) -> list[str]:
        """Remove what workers that no longer run left; the names removed. Redis away:
        nothing (the next sweep tries again)."""
        try:
            now = datetime.now(UTC)
            gone = leftovers(await self._traces.read(), self._replica, self._workers, now)
            for name in gone:
                await self._traces.forget(name)
        except StorageUnavailable as error:
            log.debug("sweeping the groups of stopped workers: %s", error)
            return []
        if gone:
            log.info("removed the workflow groups of workers no longer running: %s", gone)
        return gone
