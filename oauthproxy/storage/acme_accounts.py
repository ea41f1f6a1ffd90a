"""`acme:account:{directory-hash}:{email}`: ACME account keys, shared by every replica.

One account per ACME directory and email. The key is created once (`SET NX`: two replicas
racing end up with the same key) and its account URL is added after registration.
"""

from __future__ import annotations

import hashlib

from coredis import PureToken

from oauthproxy.models.certificates import AcmeAccount
from oauthproxy.storage import keys
from oauthproxy.storage.base import Redis, dump, load, translate_errors


def directory_hash(directory_url: str) -> str:
    return hashlib.sha256(directory_url.encode()).hexdigest()[:16]


def account_key(directory_url: str, email: str) -> str:
    return keys.acme_account(directory_hash(directory_url), email.lower())


@translate_errors
class AcmeAccountRepository:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, directory_url: str, email: str) -> AcmeAccount | None:
        return load(AcmeAccount, await self._redis.get(account_key(directory_url, email)))

    async def create(self, account: AcmeAccount) -> AcmeAccount:
        """Store `account` unless one exists already; the stored one either way."""
        key = account_key(account.directory_url, account.email)
        await self._redis.set(key, dump(account), condition=PureToken.NX)
        stored = load(AcmeAccount, await self._redis.get(key))
        return stored or account

    async def put(self, account: AcmeAccount) -> None:
        await self._redis.set(account_key(account.directory_url, account.email), dump(account))
