"""Minting tokens: the RS256 access-token JWT (with its record) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from oauthproxy.models.oauth import AccessTokenRecord, OAuthSession, RefreshTokenRecord
from oauthproxy.oauth import jws
from oauthproxy.oauth.signing import SigningKey


def refresh_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class AccessToken:
    token: str
    record: AccessTokenRecord
    lifetime: int


def mint_access(
    key: SigningKey,
    issuer: str,
    session: OAuthSession,
    *,
    scope: str,
    audience: list[str],
    lifetime: int,
) -> AccessToken:
    now = datetime.now(UTC).replace(microsecond=0)
    expires = now + timedelta(seconds=lifetime)
    identity = session.identity
    jti = uuid.uuid4().hex
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": identity.subject,
        "aud": audience,
        "azp": session.client_id,
        "client_id": session.client_id,
        "exp": int(expires.timestamp()),
        "iat": int(now.timestamp()),
        "scope": scope,
        "jti": jti,
        "username": identity.username,
        "email": identity.email,
        "groups": identity.groups,
        # when GitHub last told us the emails and groups above: the login (RFC 9068 §2.2.1)
        "auth_time": int(session.created_at.timestamp()),
    }
    record = AccessTokenRecord(
        jti=jti,
        session_id=session.session_id,
        client_id=session.client_id,
        subject=identity.subject,
        username=identity.username,
        scope=scope,
        audience=audience,
        issued_at=now,
        expires_at=expires,
    )
    return AccessToken(jws.sign(claims, key.private_key, key.kid), record, lifetime)


def mint_refresh(session: OAuthSession, scope: str) -> tuple[str, RefreshTokenRecord]:
    """A new refresh token of the session; it lives as long as the session."""
    token = secrets.token_urlsafe(48)
    record = RefreshTokenRecord(
        session_id=session.session_id,
        client_id=session.client_id,
        scope=scope,
        resources=session.resources,
        issued_at=datetime.now(UTC).replace(microsecond=0),
        expires_at=session.expires_at,
    )
    return token, record


def token_response(access: AccessToken, refresh_token: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": access.lifetime,
        "scope": access.record.scope,
    }
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return body
