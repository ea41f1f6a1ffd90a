"""`acme:challenge:{token}`: HTTP-01 key authorizations, readable by every replica.

The certificate manager writes one before asking the CA to validate; the public HTTP listener of
any replica answers `/.well-known/acme-challenge/{token}` from it, even for a hostname no instance
serves yet. Entries expire on their own.
"""

from __future__ import annotations

import re

from oauthproxy.storage.base import Redis, translate_errors

CHALLENGE_TTL_SECONDS = 900
TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def challenge_key(token: str) -> str:
    return f"acme:challenge:{token}"


@translate_errors
class ChallengeRepository:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def put(self, token: str, key_authorization: str) -> None:
        await self._redis.set(challenge_key(token), key_authorization, ex=CHALLENGE_TTL_SECONDS)

    async def get(self, token: str) -> str | None:
        """The key authorization for `token`; None for unknown (or malformed) tokens."""
        if not TOKEN.match(token):
            return None
        return await self._redis.get(challenge_key(token))

    async def delete(self, token: str) -> None:
        await self._redis.delete([challenge_key(token)])
