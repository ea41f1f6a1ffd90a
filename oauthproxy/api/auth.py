"""Bearer-token authentication for the admin API."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from quart import current_app, g, request

from oauthproxy.api.contract import Access, mark_access
from oauthproxy.api.errors import ApiError
from oauthproxy.api.state import app_state
from oauthproxy.models.tokens import Token

P = ParamSpec("P")
R = TypeVar("R")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="oauthproxy"'}


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
    token = await app_state(current_app).storage.tokens.authenticate(bearer_secret())
    if token is None:
        raise ApiError(
            401,
            "unauthorized",
            "the bearer token is not valid",
            field="Authorization",
            headers={"WWW-Authenticate": 'Bearer realm="oauthproxy", error="invalid_token"'},
        )
    return token


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
