"""Test tokens: an access token minted by the admin for testing an MCP server, without a login.

It is a real token (RS256, signed with the gateway's signing key, the usual claims) for one
resource, recorded as a session of the client `oauthproxy-test-tokens` with no refresh token, so
it is listed with the other sessions and revoked like them. Only the admin token may mint one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field, field_validator

from oauthproxy.api.resources import checked_scopes, checked_uri
from oauthproxy.models.common import HttpUri, Request, Scopes
from oauthproxy.models.oauth import OAuthSession, UserIdentity
from oauthproxy.oauth.parameters import scope_list
from oauthproxy.oauth.server import OAuthServer
from oauthproxy.oauth.tokens import mint_access, token_response

TEST_CLIENT_ID = "oauthproxy-test-tokens"
MAX_LIFETIME = 24 * 3600


class TestTokenRequest(Request):
    """`POST /api/v1/oauth/test-tokens`."""

    resource: HttpUri = Field(description="The MCP server's URI: the token's aud")
    scope: Scopes = "mcp:read mcp:write"
    username: str | None = Field(
        default=None, min_length=1, max_length=100, description="Default: the admin token's name"
    )
    lifetime: int | None = Field(
        default=None, ge=1, le=MAX_LIFETIME, description="Seconds; OAUTH_ACCESS_TOKEN_LIFETIME"
    )

    _resource = field_validator("resource")(checked_uri)

    @field_validator("scope")
    @classmethod
    def _check_scope(cls, value: str) -> str:
        scopes = checked_scopes(scope_list(value)) or []
        if not scopes:
            raise ValueError("name at least one scope")
        return " ".join(scopes)


def _session(request: TestTokenRequest, username: str, lifetime: int) -> OAuthSession:
    return OAuthSession(
        session_id=uuid.uuid4().hex,
        client_id=TEST_CLIENT_ID,
        identity=UserIdentity(subject=f"test-{username}", user_id=username, username=username),
        scope=request.scope,
        resources=[request.resource],
        expires_at=datetime.now(UTC) + timedelta(seconds=lifetime),
    )


async def mint(server: OAuthServer, request: TestTokenRequest, *, minted_by: str) -> dict[str, Any]:
    """The token response, with the session and jti to find (and revoke) it by; the user is
    `request.username`, else `minted_by`."""
    lifetime = request.lifetime or server.settings.oauth_access_token_lifetime
    session = _session(request, request.username or minted_by, lifetime)
    access = mint_access(
        (await server.prepared()).keys.signing,
        server.issuer,
        session,
        scope=request.scope,
        audience=[request.resource],
        lifetime=lifetime,
    )
    await server.store.start(session, access.record, None)
    return {
        **token_response(access, None),
        "resource": request.resource,
        "username": session.identity.username,
        "session_id": session.session_id,
        "jti": access.record.jti,
        "expires_at": access.record.expires_at.isoformat(),
    }
