"""`/api/v1/oauth/`: the authorization server's admin API (admin token only).

Clients (never their secrets), access tokens (records: the JWTs themselves are not kept),
sessions (token families) with revocation, metrics, health, the proxies' OAuth settings, clients
registered by the operator, and test tokens. Everything is read from Redis on the request.

A client id that is a URL (a Client ID Metadata Document) is accepted URL-encoded in one path
segment, like the protected-resource URIs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import Field
from quart import Blueprint, current_app
from quart_schema import validate_querystring, validate_request

from oauthproxy.api import oauth_test_tokens
from oauthproxy.api.auth import current_token, requires_token
from oauthproxy.api.errors import ApiError
from oauthproxy.api.oauth_status import (
    Snapshot,
    client_figures,
    grouped,
    health_report,
    session_user,
    status_of,
)
from oauthproxy.api.ownership import Json, storage
from oauthproxy.api.resources import URI_RULE, is_resource_proxy, metadata_url, resource_uri
from oauthproxy.api.state import app_state
from oauthproxy.errors import NotFound
from oauthproxy.models.common import Query, RedirectUri, Request, Scopes
from oauthproxy.models.oauth import AccessTokenRecord, ClientOrigin, OAuthClient, OAuthSession
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.oauth import registration
from oauthproxy.oauth.client_documents import is_document_url
from oauthproxy.oauth.clients import secret_hash
from oauthproxy.oauth.errors import OAuthError
from oauthproxy.oauth.server import OAuthServer

HIDDEN_CLIENT_FIELDS = {"client_secret_hash", "registration_access_token_hash"}

oauth_admin = Blueprint("oauth_admin", __name__, url_prefix="/api/v1/oauth")


class ClientListQuery(Query):
    active_only: bool = Field(default=False, description="Only clients with an active session")


class SessionListQuery(Query):
    include_revoked: bool = Field(default=False, description="Revoked sessions too")


class AdminClientCreate(Request):
    """`POST /api/v1/oauth/clients`: a client the operator trusts (no consent page)."""

    name: str = Field(min_length=1, max_length=200)
    redirect_uris: list[RedirectUri] = Field(min_length=1, max_length=20)
    scope: Scopes | None = Field(default=None, description="Default: mcp:read mcp:write")
    public: bool = Field(default=False, description="A public client (PKCE only, no secret)")


# --- views ------------------------------------------------------------------------------------


def client_view(client: OAuthClient) -> Json:
    """A client as the admin sees it: everything but the hashes of its secrets."""
    view = client.model_dump(mode="json", exclude=HIDDEN_CLIENT_FIELDS)
    return {**view, "confidential": client.client_secret_hash is not None}


def token_view(record: AccessTokenRecord, snapshot: Snapshot) -> Json:
    return {**record.model_dump(mode="json"), "status": status_of(record, snapshot.now)}


def session_view(session: OAuthSession, snapshot: Snapshot) -> Json:
    tokens = snapshot.tokens_by_session.get(session.session_id, [])
    return {
        "session_id": session.session_id,
        "username": session_user(session),
        **session.model_dump(mode="json", exclude={"session_id"}),
        "status": status_of(session, snapshot.now),
        "tokens": snapshot.counts(tokens),
    }


def _with_figures(client: OAuthClient, snapshot: Snapshot) -> Json:
    client_id = client.client_id
    return {
        **client_view(client),
        "sessions": snapshot.counts(snapshot.sessions_by_client.get(client_id, [])),
        "tokens": snapshot.counts(snapshot.tokens_by_client.get(client_id, [])),
    }


# --- lookups ----------------------------------------------------------------------------------


def authorization_server() -> OAuthServer:
    """The app's OAuth server, the one the protocol endpoints use (its keys load once)."""
    extensions = current_app.extensions
    if "oauth_server" not in extensions:
        state = app_state(current_app)
        extensions["oauth_server"] = OAuthServer(state.settings, state.storage)
    server: OAuthServer = extensions["oauth_server"]
    return server


async def _client(client_id: str) -> OAuthClient | None:
    """A registered client, or a metadata-document client: its cached document, or (once the
    cache dropped it) just its URL when it has sessions."""
    oauth = storage().oauth
    registered = await oauth.get_client(client_id)
    if registered is not None or not is_document_url(client_id):
        return registered
    cached = await oauth.cached_document(secret_hash(client_id))
    if cached is not None:
        return cached
    if await oauth.sessions_of_client(client_id):
        return OAuthClient(client_id=client_id, origin=ClientOrigin.METADATA_DOCUMENT)
    return None


async def _known_client(client_id: str) -> OAuthClient:
    found = await _client(client_id)
    if found is None:
        raise NotFound("client", client_id)
    return found


async def _every_client(snapshot: Snapshot) -> list[OAuthClient]:
    """The registered clients and the metadata-document clients that have sessions."""
    registered = {client.client_id for client in snapshot.clients}
    documents = {s.client_id for s in snapshot.sessions} - registered
    found = [await _client(client_id) for client_id in sorted(documents)]
    every = snapshot.clients + [client for client in found if client is not None]
    return sorted(every, key=lambda client: client.client_id)


async def _session(session_id: str) -> OAuthSession:
    found = await storage().oauth.get_session(session_id)
    if found is None:
        raise NotFound("session", session_id)
    return found


async def _proxy(hostname: str) -> ProxyTarget:
    found = await storage().proxies.get(hostname.lower().rstrip("."))
    if found is None:
        raise NotFound("proxy", hostname)
    return found


# --- clients ----------------------------------------------------------------------------------


@oauth_admin.get("/clients")
@requires_token(admin=True)
@validate_querystring(ClientListQuery)
async def list_clients(query_args: ClientListQuery) -> list[Json]:
    """Every client with its sessions and tokens counted; `?active_only=true`: only clients with
    an active session."""
    snapshot = await Snapshot.load(storage())
    views = [_with_figures(client, snapshot) for client in await _every_client(snapshot)]
    return [view for view in views if view["sessions"]["active"] or not query_args.active_only]


@oauth_admin.post("/clients")
@requires_token(admin=True)
@validate_request(AdminClientCreate)
async def register_client(data: AdminClientCreate) -> tuple[Json, int]:
    """Register a client as the operator (origin `admin`: its users see no consent page). The
    answer carries `client_secret` and `registration_access_token`, shown this once."""
    metadata: dict[str, Any] = {
        "client_name": data.name,
        "redirect_uris": data.redirect_uris,
        "scope": data.scope,
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none" if data.public else "client_secret_basic",
    }
    server = authorization_server()
    try:
        registered = await registration.register(server, metadata, origin=ClientOrigin.ADMIN)
    except OAuthError as error:
        field = "redirect_uris" if error.error == "invalid_redirect_uri" else "body"
        raise ApiError(422, error.error, error.description, field=field) from None
    return {**registered, "origin": ClientOrigin.ADMIN.value}, 201


@oauth_admin.get("/clients/<path:client_id>", **URI_RULE)
@requires_token(admin=True)
async def get_client(client_id: str) -> Json:
    """One client (without secrets) with its sessions and tokens counted."""
    client = await _known_client(client_id)
    return _with_figures(client, await Snapshot.load(storage()))


@oauth_admin.get("/clients/<path:client_id>/tokens", **URI_RULE)
@requires_token(admin=True)
async def client_tokens(client_id: str) -> list[Json]:
    """The access tokens issued to a client (records still in Redis), newest first."""
    await _known_client(client_id)
    oauth = storage().oauth
    snapshot = await Snapshot.load(storage())
    tokens = [
        token
        for session in await oauth.sessions_of_client(client_id)
        for token in await oauth.tokens_of_session(session.session_id)
    ]
    tokens.sort(key=lambda token: token.issued_at, reverse=True)
    return [token_view(token, snapshot) for token in tokens]


# --- tokens and sessions ----------------------------------------------------------------------


@oauth_admin.get("/tokens/<jti>")
@requires_token(admin=True)
async def get_token(jti: str) -> Json:
    """One access token's record (its claims and status; never the token itself)."""
    record = await storage().oauth.get_token(jti)
    if record is None:
        raise NotFound("token", jti)
    return token_view(record, await Snapshot.load(storage()))


def _listed(sessions: list[OAuthSession], snapshot: Snapshot, revoked_too: bool) -> list[Json]:
    shown = sessions if revoked_too else snapshot.active(sessions)
    shown = sorted(shown, key=lambda session: session.created_at, reverse=True)
    return [session_view(session, snapshot) for session in shown]


@oauth_admin.get("/sessions")
@requires_token(admin=True)
@validate_querystring(SessionListQuery)
async def list_sessions(query_args: SessionListQuery) -> list[Json]:
    """Active sessions, newest first (`?include_revoked=true`: revoked ones too)."""
    snapshot = await Snapshot.load(storage())
    return _listed(snapshot.sessions, snapshot, query_args.include_revoked)


@oauth_admin.get("/sessions/<session_id>")
@requires_token(admin=True)
async def get_session(session_id: str) -> Json:
    """One session with its access tokens."""
    session = await _session(session_id)
    snapshot = await Snapshot.load(storage())
    tokens = await storage().oauth.tokens_of_session(session_id)
    view = session_view(session, snapshot)
    return {**view, "access_tokens": [token_view(token, snapshot) for token in tokens]}


@oauth_admin.delete("/sessions/<session_id>")
@requires_token(admin=True)
async def revoke_session(session_id: str) -> Json:
    """Revoke a session: its refresh token stops working, and every replica refuses its access
    tokens within a second (the revocation stream)."""
    await _session(session_id)
    revoked = await storage().oauth.revoke_session(session_id)
    return {"session_id": session_id, "revoked": True, "revoked_tokens": revoked}


# --- metrics and health -----------------------------------------------------------------------


def _per_group(snapshot: Snapshot, name: str, session_key: Any, token_key: Any) -> list[Json]:
    sessions = grouped(snapshot.sessions, session_key)
    tokens = grouped(snapshot.tokens, token_key)
    return [
        {
            name: key,
            "sessions": snapshot.counts(sessions.get(key, [])),
            "tokens": snapshot.counts(tokens.get(key, [])),
        }
        for key in sorted(sessions.keys() | tokens.keys())
    ]


@oauth_admin.get("/metrics")
@requires_token(admin=True)
async def metrics() -> Json:
    """Clients, sessions and tokens counted, overall, per client and per user."""
    snapshot = await Snapshot.load(storage())
    tokens = snapshot.counts(snapshot.tokens)
    return {
        "clients": client_figures(snapshot),
        "sessions": snapshot.counts(snapshot.sessions),
        "tokens": {"issued": tokens.pop("total"), **tokens},
        "per_client": _per_group(
            snapshot, "client_id", lambda s: s.client_id, lambda t: t.client_id
        ),
        "per_user": _per_group(snapshot, "username", session_user, lambda t: t.username),
    }


@oauth_admin.get("/health")
@requires_token(admin=True)
async def health() -> Json:
    """The signing key (present, its kid), the JWKS served in-process, GitHub, the issuer."""
    return await health_report(current_app)


# --- proxies ----------------------------------------------------------------------------------


def _for_proxy(hostname: str, session: OAuthSession, tokens: list[AccessTokenRecord]) -> bool:
    """Whether the session's resources or its tokens' audiences are on `hostname`."""
    audience = [uri for token in tokens for uri in token.audience]
    return any(urlsplit(uri).hostname == hostname for uri in [*session.resources, *audience])


def _proxy_sessions(proxy: ProxyTarget, snapshot: Snapshot) -> list[OAuthSession]:
    tokens = snapshot.tokens_by_session
    return [
        session
        for session in snapshot.sessions
        if _for_proxy(proxy.hostname, session, tokens.get(session.session_id, []))
    ]


def proxy_oauth_view(proxy: ProxyTarget, snapshot: Snapshot) -> Json:
    uri = resource_uri(proxy)
    return {
        "hostname": proxy.hostname,
        "auth_enabled": proxy.auth_enabled,
        "auth_mode": proxy.auth_mode.value,
        "auth_required_users": proxy.auth_required_users,
        "auth_required_emails": proxy.auth_required_emails,
        "auth_required_groups": proxy.auth_required_groups,
        "auth_allowed_scopes": proxy.auth_allowed_scopes,
        "auth_allowed_audiences": proxy.auth_allowed_audiences,
        "resource_uri": uri,
        "resource_metadata_configured": proxy.resource_endpoint is not None,
        "metadata_url": metadata_url(uri) if is_resource_proxy(proxy) else None,
        "active_sessions": len(snapshot.active(_proxy_sessions(proxy, snapshot))),
    }


@oauth_admin.get("/proxies")
@requires_token(admin=True)
async def proxies() -> list[Json]:
    """Each proxy's OAuth settings: auth, mode, allowlists, resource metadata, active sessions."""
    snapshot = await Snapshot.load(storage())
    found = sorted(await storage().proxies.all(), key=lambda proxy: proxy.hostname)
    return [proxy_oauth_view(proxy, snapshot) for proxy in found]


@oauth_admin.get("/proxies/<hostname>/sessions")
@requires_token(admin=True)
@validate_querystring(SessionListQuery)
async def proxy_sessions(hostname: str, query_args: SessionListQuery) -> list[Json]:
    """The active sessions whose tokens are meant for this proxy (a resource on its hostname)."""
    proxy = await _proxy(hostname)
    snapshot = await Snapshot.load(storage())
    return _listed(_proxy_sessions(proxy, snapshot), snapshot, query_args.include_revoked)


# --- test tokens ------------------------------------------------------------------------------


@oauth_admin.post("/test-tokens")
@requires_token(admin=True)
@validate_request(oauth_test_tokens.TestTokenRequest)
async def test_token(data: oauth_test_tokens.TestTokenRequest) -> tuple[Json, int]:
    """For testing an MCP server: an access token for `resource`, signed with the real key and
    recorded as a session of the client `oauthproxy-test-tokens` (listed, revocable)."""
    minted = await oauth_test_tokens.mint(
        authorization_server(), data, minted_by=current_token().name
    )
    return minted, 201
