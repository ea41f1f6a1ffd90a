"""Dynamic Client Registration (RFC 7591) and its management protocol (RFC 7592).

`POST /register` is open, as MCP clients expect; the answer carries the client's secret (unless it
registered as a public client, `token_endpoint_auth_method: none`) and a registration access
token for `GET|PUT|DELETE /register/{client_id}`. Both secrets are stored only as hashes and shown
once. Deleting a client revokes every session and token it holds. Being open, `POST /register` is
limited per client address (OAUTH_REGISTER_RATE_LIMIT in OAUTH_REGISTER_RATE_WINDOW seconds).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from oauthproxy.models.oauth import ClientOrigin, OAuthClient
from oauthproxy.oauth.client_metadata import PUBLIC, parse_metadata
from oauthproxy.oauth.clients import secret_hash, secret_matches
from oauthproxy.oauth.errors import OAuthError
from oauthproxy.oauth.parameters import DEFAULT_CLIENT_SCOPE
from oauthproxy.oauth.rate_limits import Limited, over_limit
from oauthproxy.oauth.server import OAuthServer
from oauthproxy.proxy.limits import client_key

CLIENT_ID_PREFIX = "mcp_"
SERVER_MANAGED = (
    "registration_access_token",
    "registration_client_uri",
    "client_secret_expires_at",
    "client_id_issued_at",
)


def _timestamp(moment: datetime | None) -> int:
    return 0 if moment is None else int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp())


def client_information(
    server: OAuthServer, client: OAuthClient, **secrets_shown: str
) -> dict[str, Any]:
    """The registration response of RFC 7591 section 3.2.1 (secrets only when given)."""
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": _timestamp(client.created_at),
        "client_name": client.client_name,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types,
        "response_types": client.response_types,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "scope": client.scope,
        "registration_client_uri": server.endpoint(f"/register/{client.client_id}"),
    }
    optional = {
        "client_uri": client.client_uri,
        "logo_uri": client.logo_uri,
        "contacts": client.contacts or None,
        "software_id": client.software_id,
        "software_version": client.software_version,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    if not client.is_public:
        body["client_secret_expires_at"] = _timestamp(client.expires_at)
    return {**body, **secrets_shown}


def _expiry(server: OAuthServer, created: datetime) -> datetime | None:
    lifetime = server.settings.oauth_client_lifetime
    return created + timedelta(seconds=lifetime) if lifetime else None


async def admit(server: OAuthServer, client_ip: str) -> None:
    """Count an open registration from `client_ip`; 429 (RFC 6585) with Retry-After when it
    goes over the limit of the current window. The count lives in Redis, so it holds across
    replicas. An IPv6 client counts by its /64 (`client_key`), as it does for connections."""
    settings = server.settings
    limit, window = settings.oauth_register_rate_limit, settings.oauth_register_rate_window
    if not limit:
        return
    counted = await server.store.count_registration(client_key(client_ip), window * 1000)
    raise_if_limited(over_limit(counted, limit, window, "client registrations"))


async def admit_anonymous(server: OAuthServer, client_ip: str) -> None:
    """Count an anonymous request from `client_ip` that stores something (OAUTH_ANONYMOUS_RATE_*);
    429 with Retry-After over the limit."""
    settings = server.settings
    limit, window = settings.oauth_anonymous_rate_limit, settings.oauth_anonymous_rate_window
    if not limit:
        return
    counted = await server.store.count_anonymous(client_key(client_ip), window * 1000)
    what = "login starts and client-document fetches"
    raise_if_limited(over_limit(counted, limit, window, what))


def raise_if_limited(limited: Limited | None) -> None:
    if limited is not None:
        raise OAuthError(
            "too_many_requests",
            limited.description,
            status=429,
            headers={"Retry-After": str(limited.retry_after)},
        )


async def register(
    server: OAuthServer, body: Any, *, origin: ClientOrigin = ClientOrigin.DYNAMIC
) -> dict[str, Any]:
    """Register a client from its metadata; `origin=ADMIN` for operator-registered clients
    (trusted: no consent page)."""
    metadata = parse_metadata(body)
    client_id = CLIENT_ID_PREFIX + secrets.token_urlsafe(16)
    registration_token = secrets.token_urlsafe(32)
    client_secret = (
        None if metadata.token_endpoint_auth_method == PUBLIC else secrets.token_urlsafe(32)
    )
    created = datetime.now(UTC).replace(microsecond=0)
    client = metadata.client(
        client_id,
        origin,
        client_secret_hash=secret_hash(client_secret) if client_secret else None,
        registration_access_token_hash=secret_hash(registration_token),
        created_at=created,
        expires_at=_expiry(server, created),
    )
    # an open registration lives OAUTH_UNUSED_CLIENT_LIFETIME until its first token (then
    # OAUTH_CLIENT_LIFETIME, `grants._redeem`): each is ~10 KiB for 90 days, and one address
    # could keep registering (the rate limit bounds how fast, not how many stay)
    unused = created + timedelta(seconds=server.settings.oauth_unused_client_lifetime)
    dynamic = origin is ClientOrigin.DYNAMIC
    until = min(unused, client.expires_at or unused) if dynamic else None
    await server.store.put_client(client, until=until)
    shown = {"registration_access_token": registration_token}
    if client_secret is not None:
        shown["client_secret"] = client_secret
    return client_information(server, client, **shown)


def _bearer(authorization: str | None) -> str:
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise OAuthError(
            "invalid_token",
            "the registration access token is required",
            status=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return value.strip()


async def authorized_client(
    server: OAuthServer, client_id: str, authorization: str | None
) -> OAuthClient:
    """The client whose registration access token this is; 401 for anything else (an unknown
    client included, RFC 7592 section 2)."""
    token = _bearer(authorization)
    client = await server.store.get_client(client_id)
    if client is None or not secret_matches(token, client.registration_access_token_hash):
        raise OAuthError(
            "invalid_token",
            "the registration access token is not valid",
            status=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return client


async def update(server: OAuthServer, client: OAuthClient, body: Any) -> dict[str, Any]:
    """Replace the client's metadata (RFC 7592 section 2.2); its id and secrets stay."""
    if not isinstance(body, dict) or body.get("client_id") != client.client_id:
        raise OAuthError("invalid_client_metadata", "the body must carry this client's client_id")
    if managed := [name for name in SERVER_MANAGED if name in body]:
        raise OAuthError("invalid_request", f"these are the server's to set: {', '.join(managed)}")
    secret = body.get("client_secret")
    if secret is not None and not secret_matches(str(secret), client.client_secret_hash):
        raise OAuthError("invalid_client_metadata", "client_secret does not match")
    metadata = parse_metadata({k: v for k, v in body.items() if k != "client_secret"})
    if metadata.token_endpoint_auth_method != client.token_endpoint_auth_method:
        raise OAuthError("invalid_client_metadata", "token_endpoint_auth_method cannot change")
    # the admin vouched for the client as it registered it (no consent page); whoever holds
    # its registration token could otherwise send its codes anywhere, still without consent:
    # a change of where codes go, or of what it may ask, makes it an ordinary client
    scope = metadata.scope or DEFAULT_CLIENT_SCOPE
    changed = set(metadata.redirect_uris) != set(client.redirect_uris) or scope != client.scope
    trusted = client.origin is ClientOrigin.ADMIN
    origin = ClientOrigin.DYNAMIC if trusted and changed else client.origin
    updated = metadata.client(
        client.client_id,
        origin,
        client_secret_hash=client.client_secret_hash,
        registration_access_token_hash=client.registration_access_token_hash,
        created_at=client.created_at,
        expires_at=client.expires_at,
    )
    await server.store.replace_client(updated)
    return client_information(server, updated)


async def delete(server: OAuthServer, client: OAuthClient) -> None:
    await server.store.delete_client(client.client_id)
    await server.store.revoke_client_sessions(client.client_id)
