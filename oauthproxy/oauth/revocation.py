"""`POST /revoke` (RFC 7009) and `POST /introspect` (RFC 7662).

Revoking a refresh token revokes its whole session (and every access token issued in it);
revoking an access token revokes that token. Either way the access tokens land on the
`oauth:revocations` stream that every replica's data plane follows. A token that is unknown,
invalid or another client's is answered 200 and left alone, so the endpoint tells nothing.

Introspection answers the admin token (any token) and authenticated clients (their own); an
owner token of the admin API counts for nothing here.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import Any

from oauthproxy.models.oauth import OAuthClient
from oauthproxy.oauth.clients import authenticate
from oauthproxy.oauth.errors import OAuthError
from oauthproxy.oauth.parameters import Params, single
from oauthproxy.oauth.server import OAuthServer
from oauthproxy.oauth.tokens import refresh_hash
from oauthproxy.oauth.verify import Claims, InvalidToken

TOKEN_TYPE_HINTS = ("access_token", "refresh_token")
INACTIVE: dict[str, Any] = {"active": False}


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def _allowed(client: OAuthClient | None, client_id: str) -> bool:
    """Whether the caller may act on a token of `client_id` (None: the admin, every token)."""
    return client is None or hmac.compare_digest(client.client_id.encode(), client_id.encode())


async def _access_claims(server: OAuthServer, token: str) -> Claims | None:
    verifier = (await server.prepared()).verifier
    try:
        return verifier.verify(token, now=time.time())
    except InvalidToken:
        return None


def _hint(params: Params) -> None:
    hint = single(params, "token_type_hint")
    if hint is not None and hint not in TOKEN_TYPE_HINTS:
        raise OAuthError("unsupported_token_type", f"token_type_hint {hint!r} is not supported")


async def revoke(server: OAuthServer, params: Params, headers: Mapping[str, str]) -> None:
    client = await authenticate((await server.prepared()).resolver, params, headers)
    token = single(params, "token", required=True) or ""
    _hint(params)
    if _looks_like_jwt(token):
        claims = await _access_claims(server, token)
        if claims is not None and _allowed(client, claims.client_id):
            await server.store.revoke_access_token(claims.jti)
        return
    record = await server.store.get_refresh(refresh_hash(token))
    if record is not None and _allowed(client, record.client_id):
        await server.store.revoke_session(record.session_id)


async def introspect(
    server: OAuthServer, params: Params, headers: Mapping[str, str], *, admin: bool
) -> dict[str, Any]:
    """The token's metadata when it is active and the caller may see it, else `active: false`."""
    client = (
        None if admin else await authenticate((await server.prepared()).resolver, params, headers)
    )
    token = single(params, "token", required=True) or ""
    _hint(params)
    if _looks_like_jwt(token):
        return await _introspect_access(server, token, client)
    return await _introspect_refresh(server, token, client)


async def _introspect_access(
    server: OAuthServer, token: str, client: OAuthClient | None
) -> dict[str, Any]:
    claims = await _access_claims(server, token)
    record = await server.store.get_token(claims.jti) if claims else None
    if claims is None or record is None or record.revoked or not _allowed(client, claims.client_id):
        return INACTIVE
    return {
        "active": True,
        "token_type": "Bearer",
        "scope": " ".join(sorted(claims.scopes)),
        "client_id": claims.client_id,
        "username": claims.username,
        "sub": claims.subject,
        "aud": list(claims.audience),
        "iss": server.issuer,
        "exp": int(claims.expires_at),
        "iat": int(record.issued_at.timestamp()),
        "jti": claims.jti,
    }


async def _introspect_refresh(
    server: OAuthServer, token: str, client: OAuthClient | None
) -> dict[str, Any]:
    record = await server.store.get_refresh(refresh_hash(token))
    session = await server.store.get_session(record.session_id) if record else None
    if (
        record is None
        or session is None
        or session.revoked
        or not _allowed(client, record.client_id)
    ):
        return INACTIVE
    return {
        "active": True,
        "token_type": "refresh_token",
        "scope": record.scope,
        "client_id": record.client_id,
        "username": session.identity.username,
        "sub": session.identity.subject,
        "aud": record.resources,
        "iss": server.issuer,
        "exp": int(record.expires_at.timestamp()),
        "iat": int(record.issued_at.timestamp()),
    }
