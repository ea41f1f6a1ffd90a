"""`GET /authorize`: validate the request, remember it, and send the user to GitHub to log in.

The client and its redirect URI are checked first: when either is wrong the user gets a page and
is never redirected (RFC 6749 section 4.1.2.1). Every later problem goes back to the verified
redirect URI as `error=...&state=...&iss=...`: by an automatic redirect for a client the admin
registered (or the gateway's own), and otherwise through a page that names the error and links
to the client, so that a client anyone can register cannot use the gateway's address to send
browsers to its own site (RFC 9700 section 4.11.2).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from oauthproxy.models.oauth import AuthorizationRequest, OAuthClient, PendingLogin
from oauthproxy.oauth import indicators, pkce
from oauthproxy.oauth.browser import browser_hash, login_cookie_name, new_browser_token
from oauthproxy.oauth.client_documents import ClientDocumentError
from oauthproxy.oauth.errors import OAuthError, PageError, RedirectError
from oauthproxy.oauth.parameters import Params, granted_scope, single
from oauthproxy.oauth.redirect_uris import find_match
from oauthproxy.oauth.server import OAuthServer
from oauthproxy.proxy.login import GATEWAY_CLIENT_ID
from oauthproxy.settings import Settings

MAX_STATE_LENGTH = 2048
"""A client's `state` is kept with its login (5 minutes, up to 60 logins a minute per address):
16 KB ones were kept whole. (The redirect-mode login's return address has the same bound.)"""


def _page_single(params: Params, name: str) -> str | None:
    try:
        return single(params, name)
    except OAuthError as error:
        raise PageError("Invalid authorization request", error.description) from None


async def _client(server: OAuthServer, client_id: str | None) -> OAuthClient:
    if client_id is None:
        raise PageError("Invalid authorization request", "client_id is missing")
    try:
        client = await (await server.prepared()).resolver.get(client_id)
    except ClientDocumentError as error:
        raise PageError("Unknown client", f"{client_id}: {error}") from None
    if client is None:
        raise PageError("Unknown client", f"no client {client_id!r} is registered here")
    return client


def _redirect_uri(client: OAuthClient, presented: str | None) -> str:
    if presented is None:
        if len(client.redirect_uris) != 1:
            raise PageError("Invalid redirect URI", "redirect_uri is required for this client")
        return client.redirect_uris[0]
    if not find_match(client.redirect_uris, presented):
        raise PageError(
            "Invalid redirect URI",
            "the redirect_uri is not one this client registered; you were not redirected",
        )
    return presented


def _checked_request(
    server: OAuthServer, client: OAuthClient, redirect_uri: str, params: Params
) -> AuthorizationRequest:
    """The rest of the request; OAuthError for what goes back to the client."""
    if single(params, "response_type", required=True) != "code":
        raise OAuthError("unsupported_response_type", "only response_type=code is supported")
    challenge = single(params, "code_challenge")
    if challenge is None:
        raise OAuthError("invalid_request", "PKCE is required: send code_challenge (S256)")
    if single(params, "code_challenge_method") != pkce.METHOD:
        raise OAuthError("invalid_request", "code_challenge_method must be S256")
    if not pkce.valid_challenge(challenge):
        raise OAuthError("invalid_request", "code_challenge is not an S256 challenge")
    state = single(params, "state")
    if state is not None and len(state) > MAX_STATE_LENGTH:  # (kept with the login, in Redis)
        raise OAuthError("invalid_request", f"state is longer than {MAX_STATE_LENGTH} characters")
    return AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        redirect_uri_given="redirect_uri" in params,
        scope=granted_scope(single(params, "scope"), client.scope),
        state=state,
        code_challenge=challenge,
        resources=indicators.named(server.settings, params.get("resource", ())),
        proxy_hostname=single(params, "proxy_hostname"),
    )


async def _check_proxy(server: OAuthServer, request: AuthorizationRequest) -> None:
    hostname = request.proxy_hostname
    if hostname is not None and await server.storage.proxies.get(hostname.lower()) is None:
        raise OAuthError("invalid_request", f"no proxy {hostname!r} is configured")


def _check_gateway_login(settings: Settings, request: AuthorizationRequest) -> None:
    """The gateway's own client (`proxy/login.py`) is public and trusted (no consent page), and
    the callback of every redirect-mode proxy, whoever owns it, is one of its redirect URIs: an
    owner's callback would otherwise receive codes for any proxy (the owner's DNS can point its
    hostname at its own server). So its codes are only for the proxy whose callback receives
    them: that callback's origin is their one resource (none when resource indicators are off),
    and no other proxy's allowlist applies. A page, never a redirect: the redirect URI itself is
    what is wrong."""
    if request.client_id != GATEWAY_CLIENT_ID:
        return
    callback = urlsplit(request.redirect_uri)
    origin = f"{callback.scheme}://{callback.netloc}"
    hostname = (request.proxy_hostname or "").lower()  # (required: whose login this is)
    resources = [origin] if settings.mcp_resource_indicators_enabled else []
    if request.resources != resources or hostname != callback.hostname:
        raise PageError(
            "Invalid authorization request",
            f"this client logs in to the proxy at {origin} only; you were not redirected",
        )


@dataclass(frozen=True)
class LoginStart:
    """Where the browser goes (GitHub's login page), and the cookie that binds the login to it."""

    location: str
    cookie_name: str
    browser_token: str


async def begin(server: OAuthServer, params: Params) -> LoginStart:
    """Send the user to GitHub's login page, the login bound to this browser. PageError or
    RedirectError otherwise."""
    client = await _client(server, _page_single(params, "client_id"))
    redirect_uri = _redirect_uri(client, _page_single(params, "redirect_uri"))
    state = _page_single(params, "state")
    automatic = not client.needs_consent
    try:
        request = _checked_request(server, client, redirect_uri, params)
        _check_gateway_login(server.settings, request)
        await _check_proxy(server, request)
        await indicators.check_known(server.storage, server.settings, request.resources)
    except OAuthError as error:
        raise RedirectError(
            error.error, error.description, redirect_uri, state, automatic=automatic
        ) from None
    github = (await server.prepared()).github
    if github is None:
        raise RedirectError(
            "temporarily_unavailable",
            "GitHub login is not configured",
            redirect_uri,
            state,
            automatic=automatic,
        )
    login_state, browser = secrets.token_urlsafe(32), new_browser_token()
    login = PendingLogin(request=request, browser_hash=browser_hash(browser))
    await server.store.put_login(login_state, login, server.settings.oauth_session_timeout)
    return LoginStart(
        github.login_url(login_state, server.endpoint("/callback")),
        login_cookie_name(login_state),
        browser,
    )
