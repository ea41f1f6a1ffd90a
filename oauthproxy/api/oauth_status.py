"""`/api/v1/oauth/status[/clients|/tokens|/sessions]` and `/api/v1/oauth/tokens` (admin): the
authorization server counted.

Every figure is read from Redis on the request (never cached, never estimated). A token's record
lives in Redis until the token expires, and a session's until its refresh lifetime ends: the
counts cover what can still be used and what was revoked but has not expired yet. `expired`
counts the records whose time is up and that Redis has not dropped yet.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, TypeVar

from quart import Blueprint, Quart, current_app

from oauthproxy.api.auth import requires_token
from oauthproxy.api.ownership import Json, storage
from oauthproxy.api.state import app_state
from oauthproxy.models.oauth import AccessTokenRecord, OAuthClient, OAuthSession
from oauthproxy.oauth.signing import SigningKey, SigningKeyError, configured_key
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage

STATUSES = ("active", "revoked", "expired")
GENERATED_KEY_SOURCE = "generated, kept in Redis (oauth:signing_key)"

T = TypeVar("T")
Lifetime = AccessTokenRecord | OAuthSession
"""What is active, revoked or expired: an access token or a session."""
L = TypeVar("L", AccessTokenRecord, OAuthSession)

status = Blueprint("oauth_status", __name__, url_prefix="/api/v1/oauth")


def status_of(item: Lifetime, now: datetime) -> str:
    if item.revoked:
        return "revoked"
    expires = item.expires_at if item.expires_at.tzinfo else item.expires_at.replace(tzinfo=UTC)
    return "expired" if expires <= now else "active"


def counts(items: Iterable[Lifetime], now: datetime) -> dict[str, int]:
    """`{"total", "active", "revoked", "expired"}`."""
    tally = Counter(status_of(item, now) for item in items)
    return {"total": sum(tally.values()), **{name: tally[name] for name in STATUSES}}


def grouped(items: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    groups: dict[str, list[T]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return dict(sorted(groups.items()))


def session_user(session: OAuthSession) -> str:
    return session.identity.username


@dataclass(frozen=True)
class Snapshot:
    """Every client, session and access-token record, read at `now`."""

    clients: list[OAuthClient]
    sessions: list[OAuthSession]
    tokens: list[AccessTokenRecord]
    now: datetime

    @classmethod
    async def load(cls, store: Storage) -> Snapshot:
        oauth = store.oauth
        clients = await oauth.clients()
        sessions = await oauth.sessions()
        return cls(clients, sessions, await oauth.tokens(), datetime.now(UTC))

    @cached_property
    def tokens_by_session(self) -> dict[str, list[AccessTokenRecord]]:
        return grouped(self.tokens, lambda token: token.session_id)

    @cached_property
    def sessions_by_client(self) -> dict[str, list[OAuthSession]]:
        return grouped(self.sessions, lambda session: session.client_id)

    @cached_property
    def tokens_by_client(self) -> dict[str, list[AccessTokenRecord]]:
        return grouped(self.tokens, lambda token: token.client_id)

    def counts(self, items: Iterable[Lifetime]) -> dict[str, int]:
        return counts(items, self.now)

    def active(self, items: Iterable[L]) -> list[L]:
        return [item for item in items if status_of(item, self.now) == "active"]

    def by(self, items: Iterable[Lifetime], key: Callable[[Any], str]) -> dict[str, dict[str, int]]:
        return {name: self.counts(group) for name, group in grouped(items, key).items()}


def client_figures(snapshot: Snapshot) -> Json:
    """How many clients, of which origin, and how many have an active session."""
    with_sessions = {session.client_id for session in snapshot.active(snapshot.sessions)}
    return {
        "total": len(snapshot.clients),
        "by_origin": dict(Counter(client.origin.value for client in snapshot.clients)),
        "with_active_sessions": sum(c.client_id in with_sessions for c in snapshot.clients),
    }


def token_statistics(snapshot: Snapshot) -> Json:
    tokens = snapshot.tokens
    return {
        **snapshot.counts(tokens),
        "by_client": snapshot.by(tokens, lambda token: token.client_id),
        "by_user": snapshot.by(tokens, lambda token: token.username),
    }


def session_statistics(snapshot: Snapshot) -> Json:
    sessions = snapshot.sessions
    return {
        **snapshot.counts(sessions),
        "by_client": snapshot.by(sessions, lambda session: session.client_id),
        "by_user": snapshot.by(sessions, session_user),
    }


# --- health: the signing key, the JWKS and GitHub ---------------------------------------------


async def _jwks(app: Quart) -> Json:
    """GET /jwks through the app itself, in-process: what clients and proxies would fetch."""
    response = await app.test_client().get("/jwks")
    if response.status_code != 200:
        return {"reachable": False, "status_code": response.status_code, "key_ids": []}
    document = await response.get_json()
    return {"reachable": True, "key_ids": [key["kid"] for key in document.get("keys", [])]}


async def _signing_key(settings: Settings, store: Storage) -> Json:
    try:
        configured = configured_key(settings)
        if configured is not None:
            return {"present": True, "kid": configured.kid, "source": "OAUTH_JWT_PRIVATE_KEY_B64"}
        pem = await store.oauth.signing_key()
        if pem is None:
            return {"present": False, "error": "no signing key yet"}
        stored = SigningKey.from_pem(pem.encode(), source="the stored signing key")
    except SigningKeyError as error:
        return {"present": False, "error": str(error)}
    return {"present": True, "kid": stored.kid, "source": GENERATED_KEY_SOURCE}


def _github(settings: Settings) -> Json:
    return {
        "configured": bool(settings.github_client_id and settings.github_client_secret),
        "authorize_url": str(settings.github_authorize_url),
        "api_url": str(settings.github_api_url),
    }


def _overall(key: Json, jwks: Json, github: Json) -> str:
    """unhealthy: no token can be signed or checked; degraded: nobody can log in (no GitHub)."""
    if not (key["present"] and key.get("kid") in jwks["key_ids"]):
        return "unhealthy"
    return "healthy" if github["configured"] else "degraded"


async def health_report(app: Quart) -> Json:
    """The JWKS first (serving it makes the shared key when there is none yet), then the key
    every replica signs with, GitHub's configuration and the issuer."""
    state = app_state(app)
    jwks = await _jwks(app)
    key = await _signing_key(state.settings, state.storage)
    github = _github(state.settings)
    return {
        "status": _overall(key, jwks, github),
        "issuer": state.settings.oauth_issuer_url,
        "signing_key": key,
        "jwks": {"url": f"{state.settings.oauth_issuer_url}/jwks", **jwks},
        "github": github,
    }


# --- the status endpoints ---------------------------------------------------------------------


@status.get("/status")
@requires_token(admin=True)
async def overall_status() -> Json:
    """The authorization server at a glance: health, clients, sessions, tokens, resources."""
    health = await health_report(current_app)
    snapshot = await Snapshot.load(storage())
    proxies = await storage().proxies.all()
    return {
        "status": health["status"],
        "issuer": health["issuer"],
        "signing_key_id": health["signing_key"].get("kid"),
        "github_configured": health["github"]["configured"],
        "clients": client_figures(snapshot),
        "sessions": snapshot.counts(snapshot.sessions),
        "tokens": snapshot.counts(snapshot.tokens),
        "protected_proxies": sum(proxy.auth_enabled for proxy in proxies),
        "registered_resources": len(await storage().resources.all()),
    }


@status.get("/status/clients")
@requires_token(admin=True)
async def client_status() -> Json:
    """How many clients by origin, and each client's sessions and tokens."""
    snapshot = await Snapshot.load(storage())
    return {
        **client_figures(snapshot),
        "sessions_by_client": snapshot.by(snapshot.sessions, lambda s: s.client_id),
        "tokens_by_client": snapshot.by(snapshot.tokens, lambda t: t.client_id),
    }


@status.get("/status/tokens")
@status.get("/tokens")
@requires_token(admin=True)
async def token_status() -> Json:
    """Access tokens: active, revoked, expired; by client and by user."""
    return token_statistics(await Snapshot.load(storage()))


@status.get("/status/sessions")
@requires_token(admin=True)
async def session_status() -> Json:
    """Sessions (token families): active, revoked, expired; by client and by user."""
    return session_statistics(await Snapshot.load(storage()))
