"""What the gateway knows about itself beyond "Redis answers": is it serving yet, and does Redis
still hold what it serves? `/health` reports it; the reconciler and `serve` set it.

One mutable object per gateway, shared by reference (like the instance table): the parts that
learn something write it, `/health` only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class DataLoss:
    """Redis no longer holds the data this gateway serves (restarted empty, or replaced)."""

    reason: str
    detected_at: str
    """ISO time of the detection."""


class WorkerCount(Protocol):
    """The worker pool as `/health` reports it (WORKERS above 1)."""

    def counts(self) -> dict[str, int]: ...


@dataclass
class GatewayCondition:
    ready: bool = False
    """Every listener accepts connections and every proxy runs (set once, at start-up)."""
    data_loss: DataLoss | None = None
    """Set while the gateway holds its last known configuration instead of an emptied Redis."""
    workers: WorkerCount | None = None
    """The worker pool, when worker processes serve the public ports."""

    def problems(self) -> dict[str, str]:
        """Why `/health` must not say healthy: one entry per problem, none when all is well."""
        found = {}
        if not self.ready:
            found["starting"] = "the gateway is starting: its listeners are not accepting yet"
        if self.data_loss is not None:
            found["data_loss"] = self.data_loss.reason
        return found
