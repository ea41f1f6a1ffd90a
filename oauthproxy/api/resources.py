"""`/api/v1/resources/`: the registry of protected resources (`resource:{uri}`), the MCP servers
the authorization server issues tokens for. Admin only.

A resource's URI is one path segment, URL-encoded
(`/api/v1/resources/https%3A%2F%2Fmcp.example.com`; `proxy-client` encodes it). URIs are stored
canonical (RFC 8707: scheme and host lower-case) and looked up the same way.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from quart import Blueprint, current_app
from quart_schema import document_response, validate_request
from werkzeug.routing import PathConverter

from oauthproxy.api.auth import requires_token
from oauthproxy.api.contract import path_parameters
from oauthproxy.api.ownership import Json, as_json, patched, storage
from oauthproxy.api.state import app_state
from oauthproxy.errors import Conflict, NotFound
from oauthproxy.models.common import HTTP_URI_PATTERN, Hostname, HttpUri, Request, ScopeName
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.models.resources import ProtectedResource
from oauthproxy.oauth.errors import OAuthError
from oauthproxy.oauth.indicators import within_resource
from oauthproxy.oauth.parameters import canonical_resource, unsupported_scopes
from oauthproxy.oauth.verify import Claims, InvalidToken, load_verifier

METADATA_PATH = "/.well-known/oauth-protected-resource"
URI_RULE: dict[str, Any] = {"merge_slashes": False}
URI_IN_PATH: dict[str, Any] = {"type": "string", "pattern": HTTP_URI_PATTERN, "maxLength": 2048}
"""The resource's URI, as it was registered (`https://mcp.example.com/mcp`)."""


class ResourceUriConverter(PathConverter):
    """A resource URI in the path, but never `auto-register` nor one ending in `/validate-token`:
    those paths take POST only, so another method there is a 405, not a change of a resource
    of that name."""

    regex = r"(?!auto-register$)[^/].*?(?<!/validate-token)"


"""Decoded, an encoded URI has `//` in it: keep it as it is."""

Scope = ScopeName

resources = Blueprint("resources", __name__, url_prefix="/api/v1/resources")


def checked_scopes(scopes: list[str] | None) -> list[str] | None:
    """`scopes` when the server knows each of them; ValueError naming the first it does not."""
    if scopes is not None and (unknown := unsupported_scopes(scopes)):
        raise ValueError(f"unsupported scope {unknown[0]!r} (mcp:read, mcp:write, mcp:admin)")
    return scopes


def checked_uri(value: str) -> str:
    """A resource URI made canonical (RFC 8707); ValueError saying what is wrong with it."""
    try:
        return canonical_resource(value)
    except OAuthError as error:
        raise ValueError(error.description) from None


class ResourceChange(Request):
    """`PUT /api/v1/resources/{uri}`: the fields to change."""

    name: str | None = Field(default=None, max_length=200)
    proxy_target: Hostname | None = None
    scopes: list[Scope] | None = None
    metadata_url: HttpUri | None = None

    _scopes = field_validator("scopes")(checked_scopes)

    @field_validator("metadata_url")
    @classmethod
    def _check_metadata_url(cls, value: str | None) -> str | None:
        return None if value is None else checked_uri(value)


class ResourceCreate(ResourceChange):
    """`POST /api/v1/resources/`: without `metadata_url`, the RFC 9728 well-known URL of `uri`."""

    uri: HttpUri = Field(description="An absolute http(s) URI without fragment")

    _uri = field_validator("uri")(checked_uri)

    def resource(self) -> ProtectedResource:
        given = self.model_dump(exclude_none=True)
        return ProtectedResource(**{"metadata_url": metadata_url(self.uri), **given})


class TokenCheck(Request):
    token: str = Field(min_length=1, max_length=16 * 1024)


def metadata_url(uri: str) -> str:
    """Where RFC 9728 puts the metadata of `uri`: the well-known path, then the URI's path."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}{parts.path.rstrip('/')}"


def resource_uri(proxy: ProxyTarget) -> str:
    """The resource a proxy stands for: its origin (http when it does not serve HTTPS)."""
    return f"{'https' if proxy.enable_https else 'http'}://{proxy.hostname}"


def is_resource_proxy(proxy: ProxyTarget) -> bool:
    return proxy.auth_enabled or proxy.resource_endpoint is not None


def proxy_resource(proxy: ProxyTarget) -> ProtectedResource:
    uri = resource_uri(proxy)
    scopes = {"scopes": proxy.resource_scopes} if proxy.resource_scopes else {}
    return ProtectedResource(
        uri=uri,
        name=proxy.hostname,
        proxy_target=proxy.hostname,
        metadata_url=metadata_url(uri),
        **scopes,
    )


def _key(raw: str) -> str:
    """The canonical URI of a path parameter; a value that is no URI names no resource."""
    try:
        return canonical_resource(raw)
    except OAuthError:
        raise NotFound("resource", raw) from None


async def _find(raw: str) -> ProtectedResource:
    found = await storage().resources.get(_key(raw))
    if found is None:
        raise NotFound("resource", raw)
    return found


@resources.get("/")
@requires_token(admin=True)
@document_response(list[ProtectedResource])
async def list_resources() -> list[Json]:
    """Every registered protected resource, by URI."""
    return [as_json(resource) for resource in await storage().resources.all()]


@resources.post("/")
@requires_token(admin=True)
@validate_request(ResourceCreate)
@document_response(ProtectedResource, 201)
async def create_resource(data: ResourceCreate) -> tuple[Json, int]:
    """Register a protected resource; 409 when its URI is registered already."""
    resource = data.resource()
    await storage().resources.create(resource)
    await _withdraw_from_owners(resource.uri)
    return as_json(resource), 201


async def _withdraw_from_owners(uri: str) -> None:
    """A resource registered now is the admin's: an owner's proxy that listed it (or a URI
    under it) as an extra audience while it was nobody's lists it no more, so the tokens users
    get for it do not pass that proxy (their Authorization header would reach the owner's
    backend). Owners cannot list a registered resource (`proxies._check_audiences`); this is the
    other order. Each such proxy is rewritten (`proxy_updated`), so its instances are rebuilt."""
    store = storage()
    for target in await store.proxies.all():
        owner = target.owner_token_hash
        listed = target.auth_allowed_audiences or []
        if owner is None or not any(within_resource(audience, uri) for audience in listed):
            continue
        token = await store.tokens.by_hash(owner)
        if token is not None and token.is_admin:
            continue  # the admin's own proxies name the admin's resources as they like
        with contextlib.suppress(NotFound):  # (deleted meanwhile)
            await store.proxies.modify(target.hostname, functools.partial(_without, uri=uri))


def _without(target: ProxyTarget, *, uri: str) -> ProxyTarget:
    kept = [a for a in target.auth_allowed_audiences or [] if not within_resource(a, uri)]
    return target.model_copy(update={"auth_allowed_audiences": kept})


@resources.post("/auto-register")
@requires_token(admin=True)
async def auto_register() -> Json:
    """Register one resource per auth-enabled proxy or proxy with resource metadata; the ones
    registered already are left as they are."""
    created: list[Json] = []
    existing: list[str] = []
    for proxy in await storage().proxies.all():
        if not is_resource_proxy(proxy):
            continue
        resource = proxy_resource(proxy)
        try:
            await storage().resources.create(resource)
        except Conflict:
            existing.append(resource.uri)
        else:
            await _withdraw_from_owners(resource.uri)
            created.append(as_json(resource))
    return {"created": created, "existing": existing}


@resources.get("/<resource_uri:uri>", **URI_RULE)
@requires_token(admin=True)
@path_parameters(uri=URI_IN_PATH)
@document_response(ProtectedResource)
async def get_resource(uri: str) -> Json:
    """One protected resource."""
    return as_json(await _find(uri))


@resources.put("/<resource_uri:uri>", **URI_RULE)
@requires_token(admin=True)
@path_parameters(uri=URI_IN_PATH)
@validate_request(ResourceChange)
@document_response(ProtectedResource)
async def update_resource(uri: str, data: ResourceChange) -> Json:
    """Change the given fields of a resource (its URI stays)."""
    changed = patched(await _find(uri), data.model_dump(exclude_unset=True))
    await storage().resources.replace(changed)
    return as_json(changed)


@resources.delete("/<resource_uri:uri>", **URI_RULE)
@requires_token(admin=True)
@path_parameters(uri=URI_IN_PATH)
@document_response(ProtectedResource)
async def delete_resource(uri: str) -> Json:
    """Remove a resource from the registry; returns what was removed."""
    return as_json(await storage().resources.delete(_key(uri)))


def claims_json(claims: Claims) -> Json:
    return {
        "sub": claims.subject,
        "username": claims.username,
        "email": claims.email,
        "groups": list(claims.groups),
        "scope": " ".join(sorted(claims.scopes)),
        "aud": list(claims.audience),
        "client_id": claims.client_id,
        "jti": claims.jti,
        "exp": int(claims.expires_at),
    }


def names_resource(audience: tuple[str, ...], uri: str) -> bool:
    """`aud` holds the URI, or a URI under it (as a protected proxy accepts it)."""
    under = uri.rstrip("/") + "/"
    return any(item == uri or item.startswith(under) for item in audience)


async def _claims_for(token: str, uri: str) -> Claims:
    """The token's claims when it is good for `uri`; `InvalidToken` says why it is not."""
    state = app_state(current_app)
    verifier = await load_verifier(state.storage, state.settings)
    claims = verifier.verify(token, now=time.time())
    if not names_resource(claims.audience, uri):
        raise InvalidToken(f"the token's audience does not include {uri}")
    record = await state.storage.oauth.get_token(claims.jti)
    if record is not None and record.revoked:
        raise InvalidToken("revoked")
    return claims


@resources.post("/<path:uri>/validate-token", **URI_RULE)
@requires_token(admin=True)
@path_parameters(uri=URI_IN_PATH)
@validate_request(TokenCheck)
async def validate_token(uri: str, data: TokenCheck) -> Json:
    """Whether a token is good for this resource: RS256 signature with this gateway's keys,
    issuer, expiry, `aud` naming the resource, not revoked. `valid` with the claims, or the
    `reason` it is refused."""
    resource = await _find(uri)
    try:
        claims = await _claims_for(data.token, resource.uri)
    except InvalidToken as error:
        return {"valid": False, "resource": resource.uri, "reason": error.reason}
    return {"valid": True, "resource": resource.uri, "claims": claims_json(claims)}
