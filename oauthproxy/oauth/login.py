"""`GET /callback`: GitHub sends the user back. Only in the browser that started the login (its
cookie, see `oauth/browser.py`): who is it, may they log in, which of the scopes asked may they
receive (`oauth/scope_policy.py`), and what next (the consent page for clients that need it, else
straight back to the client with a code)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from oauthproxy.models.oauth import AuthorizationRequest, PendingConsent, UserIdentity
from oauthproxy.oauth.allowlist import AccessPolicy
from oauthproxy.oauth.browser import browser_hash, new_browser_token, same_browser
from oauthproxy.oauth.client_documents import ClientDocumentError
from oauthproxy.oauth.codes import issue_code
from oauthproxy.oauth.errors import OAuthError, PageError, RedirectError
from oauthproxy.oauth.github import GitHubError
from oauthproxy.oauth.indicators import within_resource
from oauthproxy.oauth.parameters import Params, single
from oauthproxy.oauth.scope_policy import ScopePolicy
from oauthproxy.oauth.server import OAuthServer
from oauthproxy.storage import Storage


async def host_policies(
    storage: Storage, proxy_hostname: str | None, resources: list[str], allowed_users: str
) -> list[AccessPolicy]:
    """The allowlists that apply, all of them: each proxy's a grant names (its proxy_hostname,
    and the hosts of its resources), and the global OAUTH_ALLOWED_GITHUB_USERS for a named host
    without a proxy (a registered resource), or when none is named. (Only proxies' used to
    count once one was named: a tenant's proxy open to everyone, named beside a registered
    resource, let in anyone for that resource.) At login, and again at every refresh."""
    hosts = [proxy_hostname] if proxy_hostname else []
    hosts += [urlsplit(uri).hostname or "" for uri in resources]
    found = []
    unproxied = False
    for hostname in dict.fromkeys(host.lower() for host in hosts if host):
        target = await storage.proxies.get(hostname)
        if target is None:
            unproxied = True
            continue
        found.append(AccessPolicy.for_proxy(target, allowed_users))
        on_host = [uri for uri in resources if (urlsplit(uri).hostname or "").lower() == hostname]
        if on_host and not await storage.tokens.is_admins(target.owner_token_hash):
            # a resource the admin registered on a host a tenant's proxy took first (owners may
            # not make one after) is under the global allowlist too
            unproxied = unproxied or await _registered(storage, on_host)
    if unproxied or not found:
        found.append(AccessPolicy.global_default(allowed_users))
    return found


async def _registered(storage: Storage, uris: list[str]) -> bool:
    """Whether any of `uris` is (under) a resource the admin registered. (A scan of the
    keyspace: only for resources on a tenant's host, which are rare.)"""
    registered = [resource.uri for resource in await storage.resources.all()]
    return any(within_resource(uri, resource) for uri in uris for resource in registered)


_EXPIRED = PageError(
    "Login expired", "this login is unknown or took too long; start again from your application"
)


def callback_state(params: Params) -> str:
    """The callback's `state` (a page error when it is missing or repeated)."""
    try:
        return single(params, "state", required=True) or ""
    except OAuthError as error:
        raise PageError("Invalid login callback", error.description) from None


async def _pending(
    server: OAuthServer, state: str, browser_token: str | None
) -> AuthorizationRequest:
    """The request the login of `state` is for, taken (used once) only in the browser that
    started it; in any other browser it stays, so the rightful browser can still finish."""
    login = await server.store.get_login(state)
    if login is None:
        raise _EXPIRED
    if not same_browser(login.browser_hash, browser_token):
        raise PageError(
            "Login started elsewhere",
            "this login was started in another browser (or cookies are off); "
            "start again from your application in this browser",
            status=403,
        )
    taken = await server.store.take_login(state)
    if taken is None:
        raise _EXPIRED
    return taken.request


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
    found = await host_policies(server.storage, request.proxy_hostname, request.resources, users)
    for policy in found:
        refusal = policy.refusal(identity)
        if refusal is not None:
            raise PageError("Access denied", refusal, status=403)


def _within_scope_policy(
    server: OAuthServer, request: AuthorizationRequest, identity: UserIdentity
) -> AuthorizationRequest:
    """The request narrowed to the scopes this user may receive (OAUTH_ADMIN_USERS,
    OAUTH_USER_SCOPES); access_denied to the client when none is left."""
    policy = ScopePolicy.of(server.settings)
    granted = policy.grant(request.scope, identity.username)
    if not granted:
        withheld = " ".join(policy.withheld(request.scope, identity.username))
        raise RedirectError(
            "access_denied",
            f"GitHub user {identity.username} may not receive the scope {withheld}",
            request.redirect_uri,
            request.state,
        )
    return request.model_copy(update={"scope": granted})


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


async def finish(server: OAuthServer, params: Params, browser_token: str | None) -> NextStep:
    """Where the user goes next: the consent page, or the client's redirect URI with a code.
    `browser_token`: the login cookie this browser sent for the callback's state."""
    request = await _pending(server, callback_state(params), browser_token)
    identity = await _identity(server, request, params)
    await _refuse_unlisted(server, request, identity)
    request = _within_scope_policy(server, request, identity)
    if not await _needs_consent(server, request):
        return NextStep(await issue_code(server, request, identity))
    request_id, browser = secrets.token_urlsafe(24), new_browser_token()
    consent = PendingConsent(
        request=request,
        identity=identity,
        csrf_token=secrets.token_urlsafe(32),
        browser_hash=browser_hash(browser),
    )
    await server.store.put_consent(request_id, consent, server.settings.oauth_session_timeout)
    return NextStep("/consent?" + urlencode({"request": request_id}), browser)
