"""`dashboard:login:{state}` and `dashboard:session:{hash}`: signing in to the dashboard with
GitHub. A login under way lives minutes and is taken once; a session names the token it acts as
(by name and by the hash of its secret, so a token deleted or given a new secret ends it) and is
stored under the hash of its own secret, never the secret itself."""

from __future__ import annotations

import hashlib
import secrets

from oauthproxy.models.common import Record
from oauthproxy.models.tokens import Token
from oauthproxy.storage import keys
from oauthproxy.storage.base import Redis, dump, load, translate_errors

SESSION_PREFIX = "dsh_"
"""Dashboard session secrets start so; token secrets start `acm_`."""


class DashboardLogin(Record):
    """A sign-in with GitHub under way: the browser that started it and the callback URL."""

    browser_hash: str
    redirect_uri: str


class DashboardSession(Record):
    token_name: str
    token_hash: str
    github_login: str


def _session_key(secret: str) -> str:
    return keys.dashboard_session(hashlib.sha256(secret.encode()).hexdigest())


@translate_errors
class DashboardRepository:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def put_login(self, state: str, login: DashboardLogin, seconds: int) -> None:
        await self._redis.set(keys.dashboard_login(state), dump(login), ex=seconds)

    async def get_login(self, state: str) -> DashboardLogin | None:
        return load(DashboardLogin, await self._redis.get(keys.dashboard_login(state)))

    async def take_login(self, state: str) -> DashboardLogin | None:
        """The login of `state`, removed in the same step: only one caller ever gets it."""
        return load(DashboardLogin, await self._redis.getdel(keys.dashboard_login(state)))

    async def create_session(self, token: Token, github_login: str, seconds: int) -> str:
        """A new session acting as `token`; returns its secret."""
        secret = SESSION_PREFIX + secrets.token_urlsafe(32)
        session = DashboardSession(
            token_name=token.name, token_hash=token.hash, github_login=github_login
        )
        await self._redis.set(_session_key(secret), dump(session), ex=seconds)
        return secret

    async def session(self, secret: str) -> DashboardSession | None:
        return load(DashboardSession, await self._redis.get(_session_key(secret)))

    async def end_session(self, secret: str) -> None:
        await self._redis.delete([_session_key(secret)])
