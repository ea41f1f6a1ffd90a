"""Answering the client: an authorization code (or an error) on its redirect URI, with `iss`
(RFC 9207) and the client's `state`."""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import urlencode, urlsplit, urlunsplit

from oauthproxy.models.oauth import AuthorizationCode, AuthorizationRequest, UserIdentity
from oauthproxy.oauth.redirect_uris import ascii_uri
from oauthproxy.oauth.server import OAuthServer


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def client_redirect(redirect_uri: str, issuer: str, state: str | None, **values: str) -> str:
    """`redirect_uri` with `values`, `state` and `iss` added to its query; in ASCII
    (`ascii_uri`), as the browser would send it and as the pages that link to it show it."""
    parts = urlsplit(ascii_uri(redirect_uri))
    added = {**values, **({"state": state} if state is not None else {}), "iss": issuer}
    query = "&".join(part for part in (parts.query, urlencode(added)) if part)
    return urlunsplit(parts._replace(query=query))


async def issue_code(
    server: OAuthServer, request: AuthorizationRequest, identity: UserIdentity
) -> str:
    """Store a fresh single-use code for the request; the client's redirect carrying it."""
    code = secrets.token_urlsafe(32)
    await server.store.put_code(
        code_hash(code),
        AuthorizationCode(request=request, identity=identity),
        server.settings.oauth_code_lifetime,
    )
    return client_redirect(request.redirect_uri, server.issuer, request.state, code=code)
