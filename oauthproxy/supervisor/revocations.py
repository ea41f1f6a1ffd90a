"""`serve_revocations`: keep the data plane's guard current with revoked tokens and signing keys.

The guard (shared by every instance) first learns every revocation still in force from
`oauth:revoked` (before the data plane serves), then each new one from `oauth:revocations` (a
blocking read of up to `REVOCATION_WAIT_MILLISECONDS`) and reloads the public signing keys every
`KEY_REFRESH_SECONDS`. Redis being away only delays both (the shared `Backoff`). While Redis has
lost its data the keys are not reloaded: the gateway keeps its last known keys.
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
        self._last_id = "0"  # first everything still in the stream, then what comes
        self._next_keys = trio.current_time()

    async def seed(self) -> None:
        """Every revocation still in force (`oauth:revoked`), whatever the stream kept."""
        for revocation in await self._storage.oauth.revoked_in_force():
            self._guard.revoke(revocation.jti, revocation.expires_at)

    async def turn(self) -> None:
        if trio.current_time() >= self._next_keys and not self._continuity.lost:
            self._guard.verifier = await load_verifier(self._storage, self._settings)
            self._guard.forget_expired(time.time())
            self._next_keys = trio.current_time() + KEY_REFRESH_SECONDS
        for revocation in await self._storage.oauth.revocations_since(
            self._last_id, block_ms=REVOCATION_WAIT_MILLISECONDS
        ):
            self._guard.revoke(revocation.jti, revocation.expires_at)
            self._last_id = revocation.id
