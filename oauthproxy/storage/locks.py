"""Locks in Redis, so a step is taken by one replica (or one request) at a time:
`cert:lock:{name}`, the issuance lock, so two replicas never order the same certificate; and
`Locks`, held while a check and the writes it allows are one step: per owner token
(`owner_locks`: a quota's last slot, a proxy deleted while a route naming it is stored) and per
Docker service (`service_locks`: its container replaced while another request starts, stops or
replaces it).

Each is taken with `SET NX PX` and a random token; released only by its holder (compare-and-delete
in Lua). It expires on its own after its time-to-live, so a replica that dies while holding it
never blocks the others for longer than that.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
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
        await _release_on_the_way_out(self.release, name, token)


OWNER_LOCK_SECONDS = 10.0
"""How long an owner lock lives if its holder dies: longer than checking and storing ever take."""

SERVICE_LOCK_SECONDS = 120.0
"""How long a service lock lives if its holder dies: longer than a container's stop (the
engine's 10 s timeout), removal, creation and start take."""

LOCK_RETRY_SECONDS = 0.02


@translate_errors
class Locks:
    def __init__(self, redis: Redis, key_of: Callable[[str], str], seconds: float) -> None:
        self._redis = redis
        self._key_of = key_of
        self._seconds = seconds
        self._release_script = redis.register_script(_RELEASE)

    async def try_acquire(self, name: str) -> str | None:
        """The holder's token, or None when another write holds the lock of `name`."""
        holder = secrets.token_urlsafe(16)
        taken = await self._redis.set(
            self._key_of(name), holder, px=int(self._seconds * 1000), condition=PureToken.NX
        )
        return holder if taken else None

    async def release(self, name: str, holder: str) -> None:
        await self._release_script(keys=[self._key_of(name)], args=[holder])

    async def acquire(self, name: str) -> str:
        """Wait until this write holds the lock of `name` (bounded by the caller's
        `fail_after`); the holder's token, for `release`."""
        holder = await self.try_acquire(name)
        while holder is None:
            await trio.sleep(LOCK_RETRY_SECONDS)
            holder = await self.try_acquire(name)
        return holder

    async def release_on_the_way_out(self, name: str, holder: str) -> None:
        await _release_on_the_way_out(self.release, name, holder)


def owner_locks(redis: Redis) -> Locks:
    return Locks(redis, keys.owner_lock, OWNER_LOCK_SECONDS)


def service_locks(redis: Redis) -> Locks:
    return Locks(redis, keys.service_lock, SERVICE_LOCK_SECONDS)


async def _release_on_the_way_out(
    release: Callable[[str, str], Awaitable[object]], name: str, holder: str
) -> None:
    """Release even when cancelled; a lock left behind (Redis closing) expires by itself."""
    with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_TIMEOUT_SECONDS):
        try:
            await release(name, holder)
        except CLEANUP_ERRORS as error:
            log.info("lock of %s left to expire: %s", name, type(error).__name__)
