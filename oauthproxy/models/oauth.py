"""OAuth 2.1 authorization-server state: clients, pending authorizations, codes, tokens."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from oauthproxy.models.common import Record, utcnow


class OAuthClient(Record):
    """`oauth:client:{id}` — a dynamically registered client (RFC 7591)."""

    client_id: str
    client_secret: str | None = None
    client_name: str = ""
    software_id: str | None = None
    software_version: str | None = None
    redirect_uris: list[str] = Field(default_factory=list)
    grant_types: list[str] = Field(default_factory=lambda: ["authorization_code"])
    response_types: list[str] = Field(default_factory=lambda: ["code"])
    scope: str = "mcp:read"
    token_endpoint_auth_method: str = "client_secret_basic"  # noqa: S105 - a method name
    registration_access_token_hash: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None


class AuthorizationState(Record):
    """`oauth:state:{state}` — an authorization request waiting for the GitHub round trip."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str | None = None
    code_challenge: str
    code_challenge_method: str = "S256"
    resources: list[str] = Field(default_factory=list)
    proxy_hostname: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class AuthorizationCode(Record):
    """`oauth:code:{code}` — single use, short-lived."""

    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    code_challenge_method: str = "S256"
    resources: list[str] = Field(default_factory=list)
    user_id: str
    username: str
    email: str | None = None
    groups: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)


class IssuedGrant(Record):
    """What every issued token records: for whom, to which client, for what and how long."""

    client_id: str
    user_id: str
    username: str
    scope: str
    audience: list[str] = Field(default_factory=list)
    issued_at: datetime
    expires_at: datetime


class AccessTokenRecord(IssuedGrant):
    """`oauth:token:{jti}` — what was issued, so it can be listed, introspected and revoked."""

    jti: str
    revoked: bool = False


class RefreshTokenRecord(IssuedGrant):
    """`oauth:refresh:{token}`."""
