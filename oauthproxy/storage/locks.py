"""`cert:lock:{name}`: the issuance lock, so two replicas never order the same certificate.

Taken with `SET NX PX` and a random token; released only by its holder (compare-and-delete in
Lua). It expires on its own after its time-to-live, so a replica that dies while issuing never
blocks the certificate for longer than that.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import trio
from coredis import PureToken

from oauthproxy.errors import StorageUnavailable
from oauthproxy.storage import keys
from oauthproxy.storage.base import Redis, translate_errors

log = logging.getLogger(__name__)

RELEASE_TIMEOUT_SECONDS = 5.0
CLEANUP_ERRORS = (StorageUnavailable, anyio.ClosedResourceError, anyio.BrokenResourceError)
"""What a clean-up on the way out may meet when the process is shutting down (the Redis client
is closing): the clean-up is skipped, and what it would remove expires on its own."""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@translate_errors
class IssuanceLocks:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._release = redis.register_script(_RELEASE)

    async def acquire(self, name: str, ttl_seconds: float) -> str | None:
        """The holder's token, or None when another holder has it."""
        token = secrets.token_urlsafe(16)
        taken = await self._redis.set(
            keys.cert_lock(name), token, px=int(ttl_seconds * 1000), condition=PureToken.NX
        )
        return token if taken else None

    async def release(self, name: str, token: str) -> bool:
        """Delete the lock if `token` still holds it; False when it expired or changed hands."""
        released: int = await self._release(keys=[keys.cert_lock(name)], args=[token])
        return released == 1

    async def is_held(self, name: str) -> bool:
        return bool(await self._redis.exists([keys.cert_lock(name)]))

    @asynccontextmanager
    async def holding(self, name: str, ttl_seconds: float) -> AsyncIterator[bool]:
        """Yields whether this caller got the lock; releases it on the way out, even when
        cancelled."""
        token = await self.acquire(name, ttl_seconds)
        try:
            yield token is not None
        finally:
            if token is not None:
                await self._release_on_the_way_out(name, token)

    async def _release_on_the_way_out(self, name: str, token: str) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_TIMEOUT_SECONDS):
            try:
                await self.release(name, token)
            except CLEANUP_ERRORS as error:
                log.info("lock of %s left to expire: %s", name, type(error).__name__)
