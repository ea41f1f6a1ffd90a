"""The consent step: before a dynamically registered (or metadata-document) client gets a code,
the logged-in user sees which client asks, where the code will be sent, and for what, and
approves or denies with a POST form. The form's CSRF token is the pending authorization's own,
compared in constant time; a pending authorization is decided once."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from oauthproxy.models.oauth import OAuthClient, PendingConsent
from oauthproxy.oauth.browser import same_browser
from oauthproxy.oauth.client_documents import ClientDocumentError
from oauthproxy.oauth.codes import client_redirect, issue_code
from oauthproxy.oauth.errors import PageError
from oauthproxy.oauth.redirect_uris import ascii_host, ascii_netloc, ascii_uri, is_loopback
from oauthproxy.oauth.server import OAuthServer

_EXPIRED = PageError(
    "Authorization expired",
    "this authorization is unknown, already decided or took too long; start again",
)


@dataclass(frozen=True)
class ConsentView:
    """What the consent page shows. Hosts and URIs are in ASCII (`ascii_uri`): an owner can
    register a client whose redirect URI names a homograph (`p\\u0430ypal.example`, a Cyrillic a),
    which in Unicode reads as the name it imitates; its `xn--` form does not, and is where the
    browser goes."""

    request_id: str
    csrf_token: str
    client_name: str
    client_id: str
    client_host: str | None
    redirect_host: str
    loopback: bool
    username: str
    scopes: list[str]
    resources: list[str]


async def _client(server: OAuthServer, client_id: str) -> OAuthClient:
    try:
        client = await (await server.prepared()).resolver.get(client_id)
    except ClientDocumentError as error:
        raise PageError("Unknown client", str(error)) from None
    if client is None:
        raise PageError("Unknown client", "the client no longer exists")
    return client


async def view(server: OAuthServer, request_id: str) -> ConsentView:
    consent = await server.store.get_consent(request_id)
    if consent is None:
        raise _EXPIRED
    request = consent.request
    client = await _client(server, request.client_id)
    redirect = urlsplit(request.redirect_uri)
    return ConsentView(
        request_id=request_id,
        csrf_token=consent.csrf_token,
        client_name=client.client_name or client.client_id,
        client_id=client.client_id,
        client_host=_client_host(client.client_id),
        redirect_host=ascii_netloc(redirect) or f"{redirect.scheme}:",
        loopback=is_loopback(redirect),
        username=consent.identity.username,
        scopes=request.scope.split(),
        resources=[ascii_uri(resource) for resource in request.resources],
    )


def _client_host(client_id: str) -> str | None:
    """The host of a client ID that is a URL (a metadata-document client), in ASCII."""
    if "://" not in client_id:
        return None
    try:
        host = urlsplit(client_id).hostname
    except ValueError:
        return None
    return ascii_host(host) if host else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def _take(
    server: OAuthServer, request_id: str, csrf_token: str, browser_token: str
) -> PendingConsent:
    consent = await server.store.get_consent(request_id)
    if consent is None:
        raise _EXPIRED
    if not _same(consent.csrf_token, csrf_token):
        raise PageError("Invalid form", "the consent form is stale or was not sent from this page")
    if not same_browser(consent.browser_hash, browser_token):
        raise PageError("Invalid form", "approve in the browser that logged in (cookies needed)")
    taken = await server.store.take_consent(request_id)
    if taken is None:
        raise _EXPIRED
    return taken


async def decide(
    server: OAuthServer, request_id: str, csrf_token: str, browser_token: str, *, approve: bool
) -> str:
    """The client's redirect: with a code when approved, `error=access_denied` when denied."""
    consent = await _take(server, request_id, csrf_token, browser_token)
    request = consent.request
    if not approve:
        return client_redirect(
            request.redirect_uri,
            server.issuer,
            request.state,
            error="access_denied",
            error_description="the user denied the request",
        )
    return await issue_code(server, request, consent.identity)
