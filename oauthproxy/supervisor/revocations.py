"""`serve_revocations`: keep the data plane's guard current with revoked tokens and signing keys.

The guard (shared by every instance) first learns every revocation still in force from
`oauth:revoked` (before the data plane serves), then each new one from `oauth:revocations` (a
blocking read of up to `REVOCATION_WAIT_MILLISECONDS`) and reloads the public signing keys every
`KEY_REFRESH_SECONDS`. The stream is trimmed by length: when what was read last has been trimmed
away (a flood of revocations outran this replica), the entries after it may be gone too, so the
guard learns the set again (`seed`) and goes on from the stream's end as it was then.

Redis being away only delays both (the shared `Backoff`). While Redis has lost its data the keys
are not reloaded: the gateway keeps its last known keys.
"""

from __future__ import annotations

import time

import trio

from oauthproxy.errors import StorageUnavailable
from oauthproxy.oauth.verify import load_verifier
from oauthproxy.proxy.guard import Guard
from oauthproxy.retrying import Backoff, retrying
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from oauthproxy.supervisor.continuity import Continuity

KEY_REFRESH_SECONDS = 60.0
REVOCATION_WAIT_MILLISECONDS = 500
MAX_BACKOFF_SECONDS = 5.0


async def serve_revocations(
    guard: Guard,
    storage: Storage,
    settings: Settings,
    continuity: Continuity,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Follow revocations and refresh keys until cancelled, whatever Redis does."""
    follower = _Follower(guard, storage, settings, continuity)
    backoff = Backoff(limit=MAX_BACKOFF_SECONDS)
    # every revocation still in force, before the data plane serves (the stream may have lost
    # older ones to a flood of newer)
    await retrying(follower.seed, StorageUnavailable, backoff, what="the revocation follower")
    task_status.started()
    while True:
        await retrying(follower.turn, StorageUnavailable, backoff, what="the revocation follower")


class _Follower:
    def __init__(
        self, guard: Guard, storage: Storage, settings: Settings, continuity: Continuity
    ) -> None:
        self._guard = guard
        self._storage = storage
        self._settings = settings
        self._continuity = continuity
        self._last_id = "0-0"
        self._next_keys = trio.current_time()

    async def seed(self) -> None:
        """Every revocation still in force (`oauth:revoked`), whatever the stream kept; the
        stream is then read after its last entry as of before the set was read (each revocation
        is written to both in one transaction, so the set holds everything up to there)."""
        _, last = await self._storage.oauth.revocations_bounds()
        for revocation in await self._storage.oauth.revoked_in_force():
            self._guard.revoke(revocation.jti, revocation.expires_at)
        self._last_id = max(self._last_id, last, key=_stream_order)

    async def turn(self) -> None:
        if trio.current_time() >= self._next_keys and not self._continuity.lost:
            self._guard.verifier = await load_verifier(self._storage, self._settings)
            self._guard.forget_expired(time.time())
            self._next_keys = trio.current_time() + KEY_REFRESH_SECONDS
        read_after = self._last_id
        batch = await self._storage.oauth.revocations_since(
            read_after, block_ms=REVOCATION_WAIT_MILLISECONDS
        )
        for revocation in batch:
            self._guard.revoke(revocation.jti, revocation.expires_at)
            self._last_id = revocation.id
        # entries after `read_after` are trimmed only once it is (trimming starts at the
        # oldest), and only while new ones arrive: a read that found some is checked
        if batch:
            first, _ = await self._storage.oauth.revocations_bounds()
            if _stream_order(first) > _stream_order(read_after):
                await self.seed()


def _stream_order(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)
