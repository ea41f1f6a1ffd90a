"""`oauth:proxy_login:{state}`: a browser login to a `redirect`-mode proxy, between the redirect to
the authorization server and the callback on the proxy's host. Single use; expires on its own."""

from __future__ import annotations

from oauthproxy.models.common import Record
from oauthproxy.storage.base import Redis, dump, load, translate_errors
from oauthproxy.storage.keys import oauth_anonymous_rate
from oauthproxy.storage.windows import WindowCount, WindowCounter

LOGIN_TTL_SECONDS = 600


class ProxyLogin(Record):
    verifier: str
    """The PKCE code verifier the callback proves possession with."""
    return_to: str
    """The path (and query) the browser asked for."""
    origin: str
    hostname: str
    browser_hash: str = ""
    """SHA-256 of the cookie set on the browser that started the login: only it may finish."""


def login_key(state: str) -> str:
    return f"oauth:proxy_login:{state}"


@translate_errors
class ProxyLoginRepository:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._windows = WindowCounter(redis)

    async def count_start(self, client_ip: str, window_ms: int) -> WindowCount:
        """Count a login start from `client_ip` (it is anonymous and stores a login); the same
        counter as the authorization server's anonymous requests."""
        return await self._windows.count(oauth_anonymous_rate(client_ip), window_ms)

    async def put(self, state: str, login: ProxyLogin) -> None:
        await self._redis.set(login_key(state), dump(login), ex=LOGIN_TTL_SECONDS)

    async def get(self, state: str) -> ProxyLogin | None:
        return load(ProxyLogin, await self._redis.get(login_key(state)))

    async def take(self, state: str) -> ProxyLogin | None:
        """The login for `state`, removed in the same step (a state is used once)."""
        return load(ProxyLogin, await self._redis.getdel(login_key(state)))
