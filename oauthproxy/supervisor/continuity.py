"""Does Redis still hold what this gateway serves? Data loss is detected, never applied.

The supervisor reconciles running instances with Redis, so a Redis that comes back empty (restarted
without persistence, or a new server) would stop every proxy. Before applying Redis as a whole the
reconciler asks `check()`: the epoch marker (`storage/epoch.py`) must be the one this gateway
knows. When it is gone the gateway keeps serving its last known configuration, says so in
`/health` (503, `data_loss`) and in the log, and re-creates its admin token so that the operator
can restore (`config-load`) and then accept (`POST /api/v1/redis/accept`), which writes a new
epoch: every replica adopts a present epoch and reconciles with Redis as it is then.

First start or loss? Both look like a Redis without a marker. A running gateway knows the epoch it
saw; a starting one finds the last epoch it saw in its data dir (`redis-epoch`), and the loss
another replica recorded (`gateway:data-loss`, until the accept). No marker, no recorded loss and
no remembered epoch is a first start (or a Redis written before markers existed: adopted); a
remembered epoch or a recorded loss without the marker is a loss.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path

import trio

from oauthproxy.condition import DataLoss, GatewayCondition
from oauthproxy.files import write_private
from oauthproxy.models.common import utcnow
from oauthproxy.storage.epoch import EpochRepository

log = logging.getLogger(__name__)

RESTORE_HINT = (
    "restore it (`just config-load FILE`, see docs/backup.md), then `just redis-accept` "
    "(POST /api/v1/redis/accept) to serve what Redis holds"
)


class Verdict(Enum):
    INTACT = "intact"
    """The epoch this gateway knows: apply Redis."""
    LOST = "lost"
    """No epoch: Redis lost its data. Keep serving what runs; apply nothing."""
    ADOPTED = "adopted"
    """A new epoch (an operator accepted Redis after a loss): reconcile everything with it."""


class Continuity:
    """This replica's view of the data's epoch, and the data-loss state it reports."""

    def __init__(
        self,
        epochs: EpochRepository,
        condition: GatewayCondition,
        epoch_file: Path,
        on_loss: Callable[[], Awaitable[object]],
    ) -> None:
        self._epochs = epochs
        self._condition = condition
        self._file = epoch_file
        self._on_loss = on_loss
        self.epoch: str | None = None

    @property
    def lost(self) -> bool:
        return self._condition.data_loss is not None

    async def start(self) -> None:
        """At start-up, before the first reconcile: claim or adopt the epoch, or detect a loss
        that happened while this gateway was down."""
        found = await self._epochs.get()
        if found is not None:
            await self._adopt(found)
            return
        recorded = await self._epochs.recorded_loss()
        if recorded is not None:
            self._lose(f"another replica found it first: {recorded}")
            return
        remembered = await trio.to_thread.run_sync(self._remembered)
        if remembered is not None:
            self._lose(
                f"Redis lost its data while this gateway was down (it last held epoch "
                f"{remembered}, remembered in {self._file})"
            )
            return
        await self._adopt(await self._epochs.claim())  # a first start, or an older Redis

    async def check(self) -> Verdict:
        """May Redis be applied as a whole now? Call after reading it and before applying it."""
        found = await self._epochs.get()
        if found is None:
            if not self.lost:
                reason = (
                    f"Redis lost its data (its epoch {self.epoch} is gone): it restarted "
                    "without persistence, or is a new server"
                )
                await self._epochs.record_loss(reason)
                await self._on_loss()  # first: when /health reports the loss, the token works
                self._lose(reason)
            return Verdict.LOST
        if found != self.epoch or self.lost:
            log.warning("Redis holds epoch %s (was %s): serving what it holds", found, self.epoch)
            await self._adopt(found)
            return Verdict.ADOPTED
        return Verdict.INTACT

    def _lose(self, reason: str) -> None:
        self._condition.data_loss = DataLoss(
            reason=f"{reason}; the gateway keeps serving its last known configuration: "
            f"{RESTORE_HINT}",
            detected_at=utcnow().isoformat(),
        )
        log.error("data loss: %s", self._condition.data_loss.reason)

    async def _adopt(self, epoch: str) -> None:
        self.epoch = epoch
        self._condition.data_loss = None
        await trio.to_thread.run_sync(write_private, self._file, epoch + "\n")

    def _remembered(self) -> str | None:
        try:
            return self._file.read_text().strip() or None
        except OSError:
            return None
