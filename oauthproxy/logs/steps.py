"""Which event an answered admin-API or OAuth request is: an OAuth step, or an admin write.

Pure: the request's method, path and a few of its values (never a secret: the `client_id`, the
`grant_type`, the consent decision, the error code of a refusal) in, an `Step` or None out.
`oauthproxy.api.audit` gathers those values after each answer and logs the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Step:
    name: str
    status: int
    client_id: str = ""
    detail: str = ""
    """Why it was refused (the OAuth error code), or what was written."""


@dataclass(frozen=True)
class Answered:
    """What `step_of` looks at."""

    method: str
    path: str
    status: int
    client_id: str = ""
    grant_type: str = ""
    decision: str = ""
    location: str = ""
    error: str = ""
    """The `error` of a JSON refusal."""


def _redirect_error(location: str) -> str:
    """The `error` a redirect carries back to the client (RFC 6749 §4.1.2.1), if any."""
    values = parse_qs(urlsplit(location).query)
    return values.get("error", [""])[0]


def step_of(answered: Answered) -> Step | None:
    """The event of an answered request, or None when it is none."""
    a = answered
    refused = a.status >= 400
    client = a.client_id
    if a.path == "/register" and a.method == "POST":
        name = "oauth.registration_refused" if refused else "oauth.registration"
        return Step(name, a.status, client, a.error)
    if a.path == "/authorize":
        error = a.error or _redirect_error(a.location)
        name = "oauth.authorize_refused" if refused or error else "oauth.authorize_started"
        return Step(name, a.status if not error or refused else 400, client, error)
    if a.path == "/callback":
        error = a.error or _redirect_error(a.location)
        name = "oauth.github_callback_failed" if refused or error else "oauth.github_callback"
        return Step(name, a.status if not error or refused else 400, client, error)
    if a.path == "/consent" and a.method == "POST":
        given = a.decision == "approve" and not refused
        return Step("oauth.consent_given" if given else "oauth.consent_refused", a.status)
    if a.path == "/token" and a.method == "POST":
        if refused:
            return Step("oauth.token_refused", a.status, client, a.error)
        refreshed = a.grant_type == "refresh_token"
        return Step(
            "oauth.token_refreshed" if refreshed else "oauth.token_issued", a.status, client
        )
    if a.path == "/revoke" and a.method == "POST":
        return Step("oauth.token_revoked", a.status, client, a.error)
    if a.path.startswith("/api/v1/") and a.method in WRITES:
        return Step("admin.write", a.status, detail=f"{a.method} {a.path}")
    return None
