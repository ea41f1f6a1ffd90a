"""`POST /token`: the authorization_code grant (PKCE S256, single-use codes bound to client,
redirect URI and resources) and the refresh_token grant (rotated on every use; a reused one
revokes its whole session)."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from oauthproxy.models.oauth import AuthorizationCode, OAuthClient, OAuthSession, UserIdentity
from oauthproxy.oauth import indicators, pkce
from oauthproxy.oauth.client_documents import is_document_url
from oauthproxy.oauth.clients import authenticate
from oauthproxy.oauth.codes import code_hash
from oauthproxy.oauth.errors import OAuthError
from oauthproxy.oauth.login import host_policies
from oauthproxy.oauth.parameters import Params, granted_scope, narrowed_resources, single
from oauthproxy.oauth.scope_policy import ScopePolicy
from oauthproxy.oauth.server import OAuthServer
from oauthproxy.oauth.tokens import mint_access, mint_refresh, refresh_hash, token_response
from oauthproxy.proxy.login import GATEWAY_CLIENT_ID

GRANT_TYPES = ("authorization_code", "refresh_token")


def _invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def exchange(
    server: OAuthServer, params: Params, headers: Mapping[str, str]
) -> dict[str, Any]:
    """The token response for a token request; OAuthError otherwise."""
    grant_type = single(params, "grant_type", required=True)
    if grant_type not in GRANT_TYPES:
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    client = await authenticate((await server.prepared()).resolver, params, headers)
    if grant_type not in client.grant_types:
        raise OAuthError("unauthorized_client", f"this client may not use {grant_type}")
    if grant_type == "authorization_code":
        return await _redeem(server, client, params)
    return await _refresh(server, client, params)


def _check_code(code: AuthorizationCode, client: OAuthClient, params: Params) -> None:
    request = code.request
    if not _same(request.client_id, client.client_id):
        raise _invalid_grant("the code was issued to another client")
    redirect_uri = single(params, "redirect_uri")
    if (
        redirect_uri is not None or request.redirect_uri_given
    ) and redirect_uri != request.redirect_uri:
        raise _invalid_grant("redirect_uri does not match the authorization request")
    if not pkce.verifier_matches(single(params, "code_verifier") or "", request.code_challenge):
        raise _invalid_grant("the PKCE code_verifier does not match the code_challenge")


async def _redeem(server: OAuthServer, client: OAuthClient, params: Params) -> dict[str, Any]:
    code_value = single(params, "code", required=True) or ""
    if single(params, "code_verifier") is None:
        raise OAuthError("invalid_request", "code_verifier is required (PKCE)")
    requested = indicators.named(server.settings, params.get("resource", ()))
    session_id = uuid.uuid4().hex
    redemption = await server.store.redeem_code(code_hash(code_value), session_id)
    if redemption.replayed_session_id is not None:
        await server.store.revoke_session(redemption.replayed_session_id)
        raise _invalid_grant("the code was already used; the tokens issued for it are revoked")
    if redemption.code is None:
        raise _invalid_grant("the code is unknown or expired")
    _check_code(redemption.code, client, params)
    if not is_document_url(client.client_id):  # (a metadata document is cached, not kept)
        await server.store.keep_client(client)
    request = redemption.code.request
    audience = narrowed_resources(requested, request.resources)
    refreshable = "refresh_token" in client.grant_types
    settings = server.settings
    lifetime = (
        settings.oauth_refresh_token_lifetime
        if refreshable
        else settings.oauth_access_token_lifetime
    )
    identity = redemption.code.identity
    if client.client_id == GATEWAY_CLIENT_ID:  # (its callback's host: `_check_gateway_login`)
        hostname = request.proxy_hostname or urlsplit(request.redirect_uri).hostname or ""
        identity = await _for_tenant_login(server, identity, hostname)
    session = OAuthSession(
        session_id=session_id,
        client_id=client.client_id,
        identity=identity,
        scope=request.scope,
        resources=request.resources,
        proxy_hostname=request.proxy_hostname,
        expires_at=datetime.now(UTC) + timedelta(seconds=lifetime),
    )
    return await _issue(server, session, request.scope, audience, refreshable, start=True)


async def _for_tenant_login(
    server: OAuthServer, identity: UserIdentity, hostname: str
) -> UserIdentity:
    """What the gateway's own login client's tokens for an owner's redirect-mode proxy say of
    the user: the groups its policy requires, the email only when it checks emails (as its
    identity headers, `access.identity_headers`). Such a token is the browser's cookie on the
    owner's hostname, and a backend reads it whole once auth is off or the cookie renamed: it
    carried the visitor's email and every organisation and team, private ones too, though no
    consent is asked for this client. The admin's proxies get the whole identity; a proxy
    gone since the login (or never there) gets the least: the login, with no email or group."""
    target = await server.storage.proxies.get(hostname.lower())
    if target is not None and await server.storage.tokens.is_admins(target.owner_token_hash):
        return identity
    required = {group.lower() for group in (target.auth_required_groups if target else None) or ()}
    checks_emails = target is not None and bool(target.auth_required_emails)
    return identity.model_copy(
        update={
            "groups": [group for group in identity.groups if group.lower() in required],
            "email": identity.email if checks_emails else None,
            "emails": identity.emails if checks_emails else [],
        }
    )


async def _issue(
    server: OAuthServer,
    session: OAuthSession,
    scope: str,
    audience: list[str],
    refreshable: bool,
    *,
    start: bool,
) -> dict[str, Any]:
    key = (await server.prepared()).keys.signing
    access = mint_access(
        key,
        server.issuer,
        session,
        scope=scope,
        audience=audience or [server.issuer],
        lifetime=server.settings.oauth_access_token_lifetime,
    )
    refresh = mint_refresh(session, session.scope) if refreshable else None
    stored = (refresh_hash(refresh[0]), refresh[1]) if refresh else None
    if start:
        await server.store.start(session, access.record, stored)
    elif not await server.store.extend(session.session_id, access.record, stored):
        raise _invalid_grant("the session was revoked")
    return token_response(access, refresh[0] if refresh else None)


async def _refresh(server: OAuthServer, client: OAuthClient, params: Params) -> dict[str, Any]:
    token = single(params, "refresh_token", required=True) or ""
    token_hash = refresh_hash(token)
    current = await server.store.get_refresh(token_hash)
    if current is not None:
        if not _same(current.client_id, client.client_id):
            raise _invalid_grant("the refresh token was issued to another client")
        scope = granted_scope(single(params, "scope"), current.scope)
        audience = narrowed_resources(
            indicators.named(server.settings, params.get("resource", ())), current.resources
        )
    rotation = await server.store.rotate_refresh(token_hash)
    if rotation.reused_session_id is not None:
        await server.store.revoke_session(rotation.reused_session_id)
        raise _invalid_grant("the refresh token was already used; its session is revoked")
    if current is None or rotation.record is None:
        raise _invalid_grant("the refresh token is unknown or expired")
    session = await server.store.get_session(rotation.record.session_id)
    if session is None or session.revoked:
        raise _invalid_grant("the session was revoked")
    scope = ScopePolicy.of(server.settings).grant(scope, session.identity.username)
    if not scope:
        raise _invalid_grant("the user may no longer receive this token's scope")
    settings = server.settings
    # the login's allowlists for this token's resources, as they are now: a user taken off one
    # refreshes no more; and one whose emails, organisations or teams they check, only while
    # what GitHub said of them at the login is recent (the session's start): it is not asked
    # again before the next login, so a user taken out of an organisation is out after that
    max_age = settings.oauth_identity_max_age
    stale = bool(max_age) and datetime.now(UTC) - session.created_at > timedelta(seconds=max_age)
    for policy in await host_policies(
        server.storage, session.proxy_hostname, audience, settings.oauth_allowed_github_users
    ):
        if policy.refusal(session.identity) is not None:
            raise _invalid_grant("the user may no longer log in for this token's resources")
        if stale and policy.reads_identity:
            raise _invalid_grant(
                "this token's resources check the user's GitHub emails, organisations or "
                "teams, which were read at a login longer ago than OAUTH_IDENTITY_MAX_AGE "
                f"({max_age}s): log in again"
            )
    return await _issue(server, session, scope, audience, True, start=False)
