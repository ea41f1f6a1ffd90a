"""`GET /callback`: GitHub sends the user back. Who is it, may they log in, and what next (the
consent page for clients that need it, else straight back to the client with a code)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from oauthproxy.models.oauth import AuthorizationRequest, PendingConsent, UserIdentity
from oauthproxy.oauth.allowlist import AccessPolicy
from oauthproxy.oauth.client_documents import ClientDocumentError
from oauthproxy.oauth.codes import issue_code
from oauthproxy.oauth.errors import OAuthError, PageError, RedirectError
from oauthproxy.oauth.github import GitHubError
from oauthproxy.oauth.parameters import Params, single
from oauthproxy.oauth.server import OAuthServer
from oauthproxy.storage import Storage


async def policies(
    storage: Storage, request: AuthorizationRequest, allowed_users: str
) -> list[AccessPolicy]:
    """The allowlists that apply: those of every proxy the request names (its proxy_hostname,
    and the hosts of its resources), else the global OAUTH_ALLOWED_GITHUB_USERS."""
    hosts = [request.proxy_hostname] if request.proxy_hostname else []
    hosts += [urlsplit(uri).hostname or "" for uri in request.resources]
    found = []
    for hostname in dict.fromkeys(host.lower() for host in hosts if host):
        target = await storage.proxies.get(hostname)
        if target is not None:
            found.append(AccessPolicy.for_proxy(target, allowed_users))
    return found or [AccessPolicy.global_default(allowed_users)]


async def _pending(server: OAuthServer, params: Params) -> AuthorizationRequest:
    try:
        state = single(params, "state", required=True)
    except OAuthError as error:
        raise PageError("Invalid login callback", error.description) from None
    request = await server.store.take_authorization(state or "")
    if request is None:
        raise PageError(
            "Login expired",
            "this login is unknown or took too long; start again from your application",
        )
    return request


async def _identity(
    server: OAuthServer, request: AuthorizationRequest, params: Params
) -> UserIdentity:
    github = (await server.prepared()).github
    code = params.get("code", [""])[0]
    if github is None or "error" in params or not code:
        raise RedirectError(
            "access_denied",
            "the GitHub login did not complete",
            request.redirect_uri,
            request.state,
        )
    try:
        return await github.identity(code, server.endpoint("/callback"))
    except GitHubError as error:
        raise PageError("GitHub login failed", str(error), status=502) from None


async def _refuse_unlisted(
    server: OAuthServer, request: AuthorizationRequest, identity: UserIdentity
) -> None:
    users = server.settings.oauth_allowed_github_users
    for policy in await policies(server.storage, request, users):
        refusal = policy.refusal(identity)
        if refusal is not None:
            raise PageError("Access denied", refusal, status=403)


async def _needs_consent(server: OAuthServer, request: AuthorizationRequest) -> bool:
    try:
        client = await (await server.prepared()).resolver.get(request.client_id)
    except ClientDocumentError as error:
        raise PageError("Unknown client", str(error)) from None
    if client is None:
        raise PageError("Unknown client", "the client was deleted during the login")
    return client.needs_consent


@dataclass(frozen=True)
class NextStep:
    location: str
    browser_token: str | None = None
    """Set as the consent cookie when the next step is the consent page."""


def browser_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def finish(server: OAuthServer, params: Params) -> NextStep:
    """Where the user goes next: the consent page, or the client's redirect URI with a code."""
    request = await _pending(server, params)
    identity = await _identity(server, request, params)
    await _refuse_unlisted(server, request, identity)
    if not await _needs_consent(server, request):
        return NextStep(await issue_code(server, request, identity))
    request_id, browser = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
    consent = PendingConsent(
        request=request,
        identity=identity,
        csrf_token=secrets.token_urlsafe(32),
        browser_hash=browser_hash(browser),
    )
    await server.store.put_consent(request_id, consent, server.settings.oauth_session_timeout)
    return NextStep("/consent?" + urlencode({"request": request_id}), browser)
