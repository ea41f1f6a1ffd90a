"""Bearer-token authentication for the admin API."""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import Awaitable, Callable, Collection
from typing import ParamSpec, TypeVar

import trio
from quart import current_app, g, request

from oauthproxy.api.contract import Access, mark_access
from oauthproxy.api.errors import ApiError
from oauthproxy.api.state import app_state
from oauthproxy.models.common import NAME_PATTERN
from oauthproxy.models.tokens import Token
from oauthproxy.storage import Storage
from oauthproxy.storage.dashboard import SESSION_PREFIX

P = ParamSpec("P")
R = TypeVar("R")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="oauthproxy"'}
_INVALID = {"WWW-Authenticate": 'Bearer realm="oauthproxy", error="invalid_token"'}

ACT_AS = "X-Act-As-Token"
"""A header with which the admin token acts as the owner token it names, suspended or not: what
that token creates, it creates (its owner, quotas and rules). `config load` replays a restored
token's records this way while the token itself cannot act yet. The admin may read any token's
secret, so this lends it nothing it lacked; only the admin token's own secret may send it (not
a dashboard session, which never reaches a token's secret either)."""


def bearer_secret() -> str:
    """The request's bearer token (401 naming `Authorization` when there is none)."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if not header:
        raise ApiError(
            401,
            "unauthorized",
            "a bearer token is required",
            field="Authorization",
            headers=_CHALLENGE,
        )
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(
            401,
            "unauthorized",
            "expected 'Authorization: Bearer <token>'",
            field="Authorization",
            headers=_CHALLENGE,
        )
    return secret.strip()


async def authenticate() -> Token:
    """The token the bearer secret is, or acts as: a dashboard session (`dsh_…`, made by
    signing in with GitHub) acts as its token while that token keeps the secret it had and its
    GitHub login may still sign in as it; the admin token acts as the token `X-Act-As-Token`
    names. A suspended token answers 401 `token_suspended` with the reason."""
    secret = bearer_secret()
    state = app_state(current_app)
    admin_logins = state.settings.admin_github_logins()
    token, session = await _resolve(state.storage, admin_logins, secret)
    g.dashboard_session = session
    acting = request.headers.get(ACT_AS)
    return token if acting is None else await _acted_as(state.storage, token, acting, session)


async def _resolve(
    storage: Storage, admin_logins: Collection[str], secret: str
) -> tuple[Token, bool]:
    """The token `secret` is (or its dashboard session acts as), and whether it is a session;
    401 when it is none, or is suspended."""
    session = secret.startswith(SESSION_PREFIX)
    if session:
        token = await _session_token(storage, secret, admin_logins)
    else:
        token = await storage.tokens.authenticate(secret)
    if token is None:
        raise _not_valid()
    refuse_suspended(token)
    return token, session


def _not_valid() -> ApiError:
    """The 401 for a bearer secret that is no token's (or no longer the caller's)."""
    return ApiError(
        401,
        "unauthorized",
        "the bearer token is not valid",
        field="Authorization",
        headers=_INVALID,
    )


RECHECK_SECONDS = 0.5
"""How often an answer that outlives its request (a followed service log, a long poll of the
request log) authenticates its caller again: a token suspended, deleted or given a new secret,
or a dashboard session ended, stops it within this time."""


def reauthentication() -> Callable[[], Awaitable[None]]:
    """In a request: a check that authenticates its caller again, as the records are now, and
    raises the 401 `authenticate` would (or names `Authorization` when the secret now stands for
    another token, or the token acted as is gone); for answers that outlive their request."""
    state = app_state(current_app)
    secret, acting, was = bearer_secret(), request.headers.get(ACT_AS), current_token()

    async def check() -> None:
        admin_logins = state.settings.admin_github_logins()
        token, session = await _resolve(state.storage, admin_logins, secret)
        if acting is not None:
            token = await _acted_as(state.storage, token, acting, session)
        if token.name != was.name or not hmac.compare_digest(token.hash, was.hash):
            raise _not_valid()

    return check


class Rechecked:
    """Authenticates the caller again (`reauthentication`) at most every RECHECK_SECONDS."""

    def __init__(self, check: Callable[[], Awaitable[None]]) -> None:
        self._check = check
        self._due = trio.current_time() + RECHECK_SECONDS

    async def __call__(self) -> None:
        """Raise the 401 when the caller is no longer authenticated (checked when due)."""
        if trio.current_time() >= self._due:
            await self._check()
            self._due = trio.current_time() + RECHECK_SECONDS

    async def allows(self) -> bool:
        """Whether the caller is still authenticated (checked when due)."""
        try:
            await self()
        except ApiError:
            return False
        return True


def refuse_suspended(token: Token) -> None:
    """401 `token_suspended`, with the reason, for a suspended token (never the admin's)."""
    if token.suspended is not None and not token.is_admin:
        raise ApiError(
            401,
            "token_suspended",
            f"the token {token.name!r} is suspended: {token.suspended} "
            "(the admin resumes it: proxy-client token resume NAME)",
            field="Authorization",
            headers=_INVALID,
        )


async def _acted_as(storage: Storage, caller: Token, name: str, session: bool) -> Token:
    """The token `name`, for the admin token's own secret; 401 naming the header otherwise (a
    caller that is not the admin learns nothing about which names exist)."""
    if caller.is_admin and not session:
        named = re.fullmatch(NAME_PATTERN, name) is not None
        acted = await storage.tokens.get(name) if named else None
        if acted is not None:
            g.acted_by = caller.name
            return acted
        detail = f"no token is named {name!r}"
    else:
        detail = f"only the admin token's own secret may send {ACT_AS}"
    raise ApiError(401, "unauthorized", detail, field=ACT_AS, headers=_INVALID)


async def _session_token(
    storage: Storage, secret: str, admin_logins: Collection[str]
) -> Token | None:
    session = await storage.dashboard.session(secret)
    if session is None:
        return None
    token = await storage.tokens.get(session.token_name)
    if token is None or not hmac.compare_digest(token.hash, session.token_hash):
        return None
    return token if _still_allowed(token, session.github_login, admin_logins) else None


def _still_allowed(token: Token, github_login: str, admin_logins: Collection[str]) -> bool:
    """Whether `github_login` may still sign in as `token` (`dashboard.sign_in.token_for`'s
    rule): a login the admin took off the list (or out of ADMIN_GITHUB_USERS) ends its
    sessions at once, not when they expire."""
    login = github_login.lower()
    if login in {user.lower() for user in token.github_users}:
        return True
    return token.is_admin and login in admin_logins


def signed_in_with_github() -> bool:
    """Whether this request comes from a dashboard session rather than a token's secret."""
    return bool(g.get("dashboard_session", False))


def current_token() -> Token:
    token: Token = g.token
    return token


def require_admin(token: Token) -> None:
    if not token.is_admin:
        raise ApiError(403, "forbidden", "this needs the admin token", field="Authorization")


def requires_token(
    *, admin: bool = False
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Authenticate the request's bearer token (and require the admin token when `admin`)."""

    def decorate(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(handler)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            token = await authenticate()
            if admin:
                require_admin(token)
            g.token = token
            return await handler(*args, **kwargs)

        mark_access(guarded, Access.ADMIN if admin else Access.OWNER)
        return guarded

    return decorate
