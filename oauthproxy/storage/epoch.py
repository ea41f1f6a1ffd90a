"""The data's epoch: one key that says "this Redis still holds the data the gateway serves".

A Redis restarted without persistence (or replaced by a new server) answers every command, but
empty: without a marker that empty truth looks like an operator who deleted everything. The
epoch key is that marker. It is written once, when a gateway first finds Redis empty, and anew
only when an operator accepts Redis as it is after a loss (`POST /api/v1/redis/accept`).
"""

from __future__ import annotations

import secrets

from coredis import PureToken

from oauthproxy.models.common import utcnow
from oauthproxy.storage import keys
from oauthproxy.storage.base import Redis, translate_errors


def new_epoch() -> str:
    return f"{utcnow().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(6)}"


@translate_errors
class EpochRepository:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self) -> str | None:
        value = await self._redis.get(keys.GATEWAY_EPOCH)
        return str(value) if value is not None else None

    async def claim(self) -> str:
        """Write a first epoch unless one exists (replicas starting together agree on the
        first writer's); the epoch Redis holds afterwards."""
        await self._redis.set(keys.GATEWAY_EPOCH, new_epoch(), condition=PureToken.NX)
        found = await self.get()
        if found is None:  # flushed in between: claim again
            return await self.claim()
        return found

    async def renew(self) -> str:
        """A new epoch, whatever was there, and no recorded loss: Redis as it is now is the
        truth again."""
        epoch = new_epoch()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.GATEWAY_EPOCH, epoch)
            pipe.delete([keys.GATEWAY_DATA_LOSS])
        return epoch

    async def record_loss(self, reason: str) -> None:
        """Record that the data was lost (the first replica to notice wins)."""
        await self._redis.set(keys.GATEWAY_DATA_LOSS, reason, condition=PureToken.NX)

    async def recorded_loss(self) -> str | None:
        value = await self._redis.get(keys.GATEWAY_DATA_LOSS)
        return str(value) if value is not None else None
