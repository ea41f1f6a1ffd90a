"""What the public endpoints answer, for the OpenAPI document (`contract.answers`).

The OAuth machine endpoints answer RFC 6749's JSON errors, the browser flow answers HTML pages
and redirects, `/verify` answers forward-auth JSON, `/metrics` Prometheus text. None of them needs
a token of the admin API (`/metrics` checks the admin token itself).
"""

from __future__ import annotations

from oauthproxy.api.contract import Answer
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
    Answer("302", "To GitHub's login, or back to the client with an error", None),
    BAD_PAGE,
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
