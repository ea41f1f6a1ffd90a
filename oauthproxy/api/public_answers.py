"""What the public endpoints answer, for the OpenAPI document (`contract.answers`).

The OAuth machine endpoints answer RFC 6749's JSON errors, the browser flow answers HTML pages
and redirects, `/verify` answers forward-auth JSON, `/metrics` Prometheus text. None of them needs
a token of the admin API (`/metrics` checks the admin token itself).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from oauthproxy.api.contract import Answer
from oauthproxy.models.common import Omittable, RedirectUri
from oauthproxy.models.errors import ErrorBody, OAuthErrorBody

HTML = "text/html"


def _page(status: int, description: str) -> Answer:
    return Answer(str(status), description, HTML)


def _oauth(status: int, description: str) -> Answer:
    return Answer(str(status), description, model=OAuthErrorBody)


BAD_PAGE = _page(400, "The request is not valid: an HTML page says why")
TOO_MANY = _oauth(429, "Too many anonymous requests from this address (see Retry-After)")
OAUTH_BAD = _oauth(400, "The request is not valid (RFC 6749 section 5.2)")
OAUTH_CLIENT = _oauth(401, "The client (or its registration access token) is not authenticated")

METADATA = (Answer("200", "The authorization server's metadata (RFC 8414)"),)
JWKS = (Answer("200", "The public keys that verify the gateway's access tokens (RFC 7517)"),)
AUTHORIZE = (
    Answer(
        "302",
        "To GitHub's login, or back to a client the admin registered with an error",
        None,
    ),
    _page(
        400,
        "The request is not valid: an HTML page says why (for a client anyone could register,"
        " with a link back to it carrying the error)",
    ),
    _oauth(400, "An authorization request the client must fix, before its redirect is known"),
    TOO_MANY,
)
CALLBACK = (
    Answer("302", "To the consent page, or back to the client", None),
    BAD_PAGE,
    _page(403, "This GitHub user may not log in here"),
    _page(502, "GitHub could not be reached or refused the code"),
)
CONSENT_PAGE = (Answer("200", "The consent page", HTML), BAD_PAGE)
CONSENT_DECISION = (Answer("303", "Back to the client, with a code or an error", None), BAD_PAGE)
TOKEN = (Answer("200", "Tokens (RFC 6749 section 5.1)"), OAUTH_BAD, OAUTH_CLIENT, TOO_MANY)
REVOKE = (Answer("200", "Revoked (or unknown: RFC 7009)", None), OAUTH_BAD, OAUTH_CLIENT, TOO_MANY)
INTROSPECT = (Answer("200", "The token's state (RFC 7662)"), OAUTH_BAD, OAUTH_CLIENT, TOO_MANY)
REGISTER = (Answer("201", "The registered client (RFC 7591)"), OAUTH_BAD, TOO_MANY)
REGISTRATION = (Answer("200", "The client's registration (RFC 7592)"), OAUTH_BAD, OAUTH_CLIENT)
REGISTRATION_DELETED = (Answer("204", "Deleted", None), OAUTH_CLIENT)
VERIFY = (
    Answer("200", "The token is valid for the forwarded host: identity in X-Auth-* headers"),
    Answer("400", "X-Forwarded-Host or X-Forwarded-Proto is malformed", model=ErrorBody),
    Answer("401", "No token, or not a valid one (WWW-Authenticate says how)", model=ErrorBody),
    Answer("403", "The token's user or scope is not allowed on this host", model=ErrorBody),
)
HEALTH = (
    Answer("200", "Healthy: Redis answers and nothing is wrong"),
    Answer("503", "Unhealthy: `components` and `problems` say what is wrong"),
)
METRICS = (
    Answer("200", "Prometheus text format", "text/plain"),
    Answer("401", "The admin token is needed", model=ErrorBody),
    Answer("404", "METRICS_ENABLED is off", model=ErrorBody),
)


# --- what the public endpoints take (the handlers read these themselves) ---------------------


class ForwardedHeaders(BaseModel):
    """What `/verify` needs to know: the host (and scheme) the checked request was for."""

    x_forwarded_host: str = Field(pattern=r"^(?:[A-Za-z0-9-]+\.)*[A-Za-z0-9-]+(?::[0-9]{1,5})?$")
    x_forwarded_proto: Omittable[Literal["http", "https"]] = None


class TokenReference(BaseModel):
    """The token to revoke (RFC 7009) or introspect (RFC 7662)."""

    token: str = Field(min_length=1)
    token_type_hint: Omittable[Literal["access_token", "refresh_token"]] = None


_SCOPE = "(?:mcp:read|mcp:write|mcp:admin)"
_MAYBE_SCOPES = rf"^(?: *{_SCOPE}(?: +{_SCOPE})*)? *$"
_Text = Annotated[str, StringConstraints(max_length=2000)]
_Name = Annotated[str, StringConstraints(max_length=200)]


AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]


class ClientRegistration(BaseModel):
    """Client metadata (RFC 7591 section 2), with the rules `oauth.client_metadata` applies
    (a member given as null counts as left out)."""

    redirect_uris: list[RedirectUri] = Field(min_length=1, max_length=20)
    client_name: _Name | None = None
    client_uri: _Text | None = None
    logo_uri: _Text | None = None
    tos_uri: _Text | None = None
    policy_uri: _Text | None = None
    contacts: list[_Text] | None = Field(default=None, max_length=10)
    software_id: _Name | None = None
    software_version: _Name | None = None
    grant_types: list[Literal["authorization_code", "refresh_token"]] | None = Field(
        default=None, json_schema_extra={"contains": {"const": "authorization_code"}}
    )
    response_types: list[Literal["code"]] | None = Field(default=None, min_length=1, max_length=1)
    token_endpoint_auth_method: AuthMethod | None = None
    scope: Annotated[str, StringConstraints(max_length=2000, pattern=_MAYBE_SCOPES)] | None = None
