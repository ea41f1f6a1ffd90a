"""`serve_workflow`: read `events:workflow` and let the reconciler act on what they name.

Each turn reads a batch (blocking up to a second), takes back entries left pending by a crash
(`XAUTOCLAIM`, every `RECLAIM_EVERY_SECONDS`), checks that Redis still holds the data
(`continuity.py`), acts, acknowledges, and runs a full reconcile every `FULL_RECONCILE_SECONDS`.
When Redis goes away the turn fails: instances keep serving, the loop waits (the shared
`Backoff`), rejoins its consumer group and reconciles everything before reading again.
"""

from __future__ import annotations

import logging

import trio

from oauthproxy.errors import StorageUnavailable
from oauthproxy.retrying import Backoff, retrying
from oauthproxy.storage.workflow import WorkflowConsumer
from oauthproxy.supervisor.continuity import Continuity, Verdict
from oauthproxy.supervisor.reconciler import Reconciler

log = logging.getLogger(__name__)

FULL_RECONCILE_SECONDS = 60.0
RECLAIM_EVERY_SECONDS = 10.0
RECLAIM_IDLE_MILLISECONDS = 30_000
MAX_BACKOFF_SECONDS = 5.0


async def serve_workflow(
    reconciler: Reconciler,
    consumer: WorkflowConsumer,
    continuity: Continuity,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Consume events until cancelled; ride out Redis outages, then catch up."""
    turns = _Turns(reconciler, consumer, continuity)
    backoff = Backoff(limit=MAX_BACKOFF_SECONDS)
    task_status.started()
    while True:
        await retrying(turns.turn, StorageUnavailable, backoff, what="the workflow consumer")


class _Turns:
    """One turn of the loop at a time, and what carries over between turns."""

    def __init__(
        self, reconciler: Reconciler, consumer: WorkflowConsumer, continuity: Continuity
    ) -> None:
        self._reconciler = reconciler
        self._consumer = consumer
        self._continuity = continuity
        self._joined = True
        self._next_full = trio.current_time() + FULL_RECONCILE_SECONDS
        self._next_reclaim = trio.current_time()

    async def turn(self) -> None:
        try:
            if not self._joined:
                await self._rejoin()
            await self._read_and_act()
        except StorageUnavailable as error:
            if self._joined:
                log.warning("Redis unavailable (%s); instances keep serving", error)
            self._joined = False
            raise

    async def _rejoin(self) -> None:
        await self._consumer.join()
        await self._reconciler.reconcile_all()
        self._joined = True
        log.info("Redis is back: reconciled %d proxies", self._reconciler.running_count)

    async def _read_and_act(self) -> None:
        deliveries = await self._consumer.read()
        now = trio.current_time()
        if now >= self._next_reclaim:
            deliveries += await self._consumer.reclaim(RECLAIM_IDLE_MILLISECONDS)
            self._next_reclaim = now + RECLAIM_EVERY_SECONDS
        verdict = await self._continuity.check()
        if verdict is Verdict.LOST:
            await self._consumer.ack(deliveries)  # an accept reconciles everything
            return
        if verdict is Verdict.ADOPTED:
            await self._reconciler.reconcile_all()
            self._next_full = now + FULL_RECONCILE_SECONDS
        if deliveries:
            await self._reconciler.handle(deliveries)
            await self._consumer.ack(deliveries)
        if now >= self._next_full:
            await self._reconciler.reconcile_all()
            self._next_full = now + FULL_RECONCILE_SECONDS
