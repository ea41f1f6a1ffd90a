"""HTTP-01 challenges: `/.well-known/acme-challenge/{token}` answered on every hostname.

Answered before any instance lookup (a hostname gets its first certificate before it is served)
and never redirected to HTTPS. The key authorizations live in Redis, so any replica answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from oauthproxy.errors import StorageUnavailable
from oauthproxy.proxy.responses import Reply, error_reply, storage_error
from oauthproxy.storage.base import within

PREFIX = b"/.well-known/acme-challenge/"

ChallengeLookup = Callable[[str], Awaitable[str | None]]


def is_challenge(target: bytes) -> bool:
    return target.startswith(PREFIX)


def bounded(lookup: ChallengeLookup, seconds: float) -> ChallengeLookup:
    """`lookup`, waiting at most `seconds` (API_REDIS_TIMEOUT) for Redis."""

    async def bounded_lookup(token: str) -> str | None:
        return await within(seconds, lookup(token))

    return bounded_lookup


async def challenge_reply(target: bytes, lookup: ChallengeLookup) -> Reply:
    token = target[len(PREFIX) :].partition(b"?")[0].decode("latin-1")
    try:
        key_authorization = await lookup(token)
    except StorageUnavailable as error:
        return storage_error(error, "challenges")
    if key_authorization is None:
        return error_reply(404, "unknown_challenge", "no such ACME challenge")
    text = [(b"content-type", b"text/plain")]
    return Reply(200, text, key_authorization.encode(), "acme_challenge")
