"""OAuth 2.1 authorization-server state: clients, pending authorizations, codes, sessions, tokens.

Secrets (client secrets, registration access tokens, codes, refresh tokens) are never stored: only
their SHA-256 hashes, so a Redis dump or an admin listing cannot replay them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from oauthproxy.models.common import Record, utcnow


class ClientOrigin(StrEnum):
    DYNAMIC = "dynamic"
    """Registered through `/register` (RFC 7591) by anyone: the user consents before a code."""
    METADATA_DOCUMENT = "metadata_document"
    """An HTTPS URL as client_id whose document the server fetched: the user consents too."""
    ADMIN = "admin"
    """Registered by the operator: trusted, no consent page."""


class OAuthClient(Record):
    """`oauth:client:{id}` — a registered client (RFC 7591), or a fetched metadata document."""

    client_id: str
    client_secret_hash: str | None = None
    client_name: str = ""
    client_uri: str | None = None
    logo_uri: str | None = None
    contacts: list[str] = Field(default_factory=list)
    software_id: str | None = None
    software_version: str | None = None
    redirect_uris: list[str] = Field(default_factory=list)
    grant_types: list[str] = Field(default_factory=lambda: ["authorization_code"])
    response_types: list[str] = Field(default_factory=lambda: ["code"])
    scope: str = "mcp:read mcp:write"
    token_endpoint_auth_method: str = "client_secret_basic"  # noqa: S105 - a method name
    registration_access_token_hash: str | None = None
    origin: ClientOrigin = ClientOrigin.DYNAMIC
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"  # noqa: S105 - a method name

    @property
    def needs_consent(self) -> bool:
        return self.origin is not ClientOrigin.ADMIN


class UserIdentity(Record):
    """Who logged in at GitHub, as the tokens name them."""

    subject: str
    """`github-<numeric id>`: stable across renames."""
    user_id: str
    username: str
    email: str | None = None
    """The primary verified email."""
    emails: list[str] = Field(default_factory=list)
    """Every verified email (checked against email allowlists at login)."""
    groups: list[str] = Field(default_factory=list)
    """GitHub organisations (`org`) and teams (`org/team`)."""


class AuthorizationRequest(Record):
    """A validated `/authorize` request: what the code will be bound to."""

    client_id: str
    redirect_uri: str
    redirect_uri_given: bool = True
    """Whether the request named it (the token request must then repeat it)."""
    scope: str
    state: str | None = None
    code_challenge: str
    code_challenge_method: str = "S256"
    resources: list[str] = Field(default_factory=list)
    proxy_hostname: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class PendingLogin(Record):
    """`oauth:state:{state}` — an authorization request out at GitHub for the user's login."""

    request: AuthorizationRequest
    browser_hash: str
    """SHA-256 of the cookie set on the browser that went to GitHub: the callback goes on only
    in that browser (a `state` carried elsewhere is refused)."""


class PendingConsent(Record):
    """`oauth:consent:{id}` — a logged-in user about to approve or deny a client."""

    request: AuthorizationRequest
    identity: UserIdentity
    csrf_token: str
    """Sent in the form: proves the POST comes from the consent page."""
    browser_hash: str = ""
    """SHA-256 of the cookie set on the browser that logged in: a leaked consent URL is useless
    in any other browser."""


class AuthorizationCode(Record):
    """`oauth:code:{sha256(code)}` — single use, short-lived, bound to the request."""

    request: AuthorizationRequest
    identity: UserIdentity
    created_at: datetime = Field(default_factory=utcnow)


class OAuthSession(Record):
    """`oauth:session:{id}` — one grant: a token family that refreshes and is revoked as one."""

    session_id: str
    client_id: str
    identity: UserIdentity
    scope: str
    resources: list[str] = Field(default_factory=list)
    proxy_hostname: str | None = None
    """The proxy the login named: its allowlist, with the resources', is checked again at each
    refresh."""
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked: bool = False
    revoked_at: datetime | None = None


class AccessTokenRecord(Record):
    """`oauth:token:{jti}` — an issued access token, for listing, introspection and revocation."""

    jti: str
    session_id: str
    client_id: str
    subject: str
    username: str
    scope: str
    audience: list[str] = Field(default_factory=list)
    issued_at: datetime
    expires_at: datetime
    revoked: bool = False


class RefreshTokenRecord(Record):
    """`oauth:refresh:{sha256(token)}` — the live refresh token of a session (rotated on use)."""

    session_id: str
    client_id: str
    scope: str
    resources: list[str] = Field(default_factory=list)
    issued_at: datetime
    expires_at: datetime


class Revocation(Record):
    """One entry of the `oauth:revocations` stream."""

    id: str
    jti: str
    expires_at: float
