"""Finding a client (registered, or a Client ID Metadata Document) and authenticating it at the
token, revocation and introspection endpoints (client_secret_basic, client_secret_post, none)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from oauthproxy.models.oauth import OAuthClient
from oauthproxy.oauth.client_documents import (
    ClientDocumentError,
    document_client,
    fetch_document,
    is_document_url,
)
from oauthproxy.oauth.errors import OAuthError, invalid_client
from oauthproxy.oauth.parameters import Params, single
from oauthproxy.storage.oauth import OAuthStore


def secret_hash(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str | None) -> bool:
    return stored_hash is not None and hmac.compare_digest(secret_hash(secret), stored_hash)


@dataclass(frozen=True)
class ClientResolver:
    store: OAuthStore
    allow_loopback_documents: bool
    tls: ssl.SSLContext | bool

    async def get(self, client_id: str) -> OAuthClient | None:
        """The client, or None when unknown. A URL client_id is fetched (and cached);
        ClientDocumentError says why its document cannot be used."""
        if not is_document_url(client_id):
            return await self.store.get_client(client_id)
        url_hash = secret_hash(client_id)
        cached = await self.store.cached_document(url_hash)
        if cached is not None:
            return cached
        document, seconds = await fetch_document(
            client_id, allow_loopback=self.allow_loopback_documents, tls=self.tls
        )
        client = document_client(client_id, document)
        await self.store.cache_document(url_hash, client, seconds)
        return client

    async def would_fetch(self, client_id: str) -> bool:
        """Whether `get` would fetch a metadata document (and cache it) for `client_id`."""
        if not is_document_url(client_id):
            return False
        return await self.store.cached_document(secret_hash(client_id)) is None


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError, and a non-ASCII str's own
        raise invalid_client("malformed Basic credentials", basic=True) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise invalid_client("malformed Basic credentials", basic=True)
    return unquote_plus(client_id), unquote_plus(secret)


def presented_credentials(params: Params, authorization: str | None) -> tuple[str, str | None]:
    """The client_id and secret a request carries (Basic header, or the body); both at once, or
    a body client_id that differs from the header's, is an error."""
    basic = _basic_credentials(authorization)
    body_id = single(params, "client_id")
    body_secret = single(params, "client_secret")
    if basic is not None:
        if body_secret is not None or (body_id is not None and body_id != basic[0]):
            raise OAuthError("invalid_request", "use one client authentication method")
        return basic
    if body_id is None:
        raise invalid_client("client authentication is required")
    return body_id, body_secret


async def authenticate(
    resolver: ClientResolver, params: Params, headers: Mapping[str, str]
) -> OAuthClient:
    """The client a token-endpoint request authenticates as; invalid_client (401) otherwise."""
    authorization = headers.get("authorization")
    client_id, secret = presented_credentials(params, authorization)
    basic = bool(authorization and authorization.lower().startswith("basic"))
    try:
        client = await resolver.get(client_id)
    except ClientDocumentError as error:
        raise invalid_client(f"the client metadata document is unusable: {error}") from None
    if client is None:
        raise invalid_client("unknown client", basic=basic)
    if client.is_public:
        if secret is not None:
            raise invalid_client("a public client has no secret", basic=basic)
        return client
    if secret is None or not secret_matches(secret, client.client_secret_hash):
        raise invalid_client("client authentication failed", basic=basic)
    return client
