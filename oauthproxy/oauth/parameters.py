"""Scopes and resource indicators (RFC 8707): parsing and validation shared by the endpoints."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from oauthproxy.oauth.errors import OAuthError

SUPPORTED_SCOPES = ("mcp:read", "mcp:write", "mcp:admin")
DEFAULT_CLIENT_SCOPE = "mcp:read mcp:write"

Params = Mapping[str, Sequence[str]]
"""A request's parameters, each with every value it was given."""

SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
"""RFC 3986 section 3.1 (urlsplit lower-cases it)."""


def single(params: Params, name: str, *, required: bool = False) -> str | None:
    """A parameter given at most once (RFC 6749 section 3.1); OAuthError when repeated/missing."""
    values = params.get(name, ())
    if len(values) > 1:
        raise OAuthError("invalid_request", f"{name} is given more than once")
    value = values[0] if values else None
    if required and not value:
        raise OAuthError("invalid_request", f"{name} is required")
    return value or None


def scope_list(scope: str | None) -> list[str]:
    """Space-separated scopes, de-duplicated, in their first order."""
    return list(dict.fromkeys((scope or "").split()))


def unsupported_scopes(scopes: Iterable[str]) -> list[str]:
    return [scope for scope in scopes if scope not in SUPPORTED_SCOPES]


def granted_scope(requested: str | None, allowed: str) -> str:
    """The scope to grant: what was asked (default: everything `allowed`) if `allowed` covers it."""
    wanted = scope_list(requested) or scope_list(allowed)
    outside = [scope for scope in wanted if scope not in scope_list(allowed)]
    if outside:
        raise OAuthError("invalid_scope", f"scope not allowed here: {' '.join(outside)}")
    return " ".join(wanted)


def canonical_resource(uri: str) -> str:
    """An absolute http(s) URI without fragment, scheme and host lower-cased (RFC 8707 sec. 2)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise OAuthError("invalid_target", f"resource {uri!r} is not a URI") from None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise OAuthError("invalid_target", f"resource {uri!r} must be an absolute http(s) URI")
    if parts.fragment or "#" in uri:
        raise OAuthError("invalid_target", f"resource {uri!r} must not have a fragment")
    return urlunsplit(parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()))


def absolute_resource(uri: str) -> str:
    """Any absolute URI without fragment (RFC 8707 section 2: `https://…`, `urn:…`), scheme and
    host lower-cased; an http(s) one must name a host, as `canonical_resource` says."""
    parts = urlsplit(uri)
    if parts.scheme in {"http", "https"}:
        return canonical_resource(uri)
    if not SCHEME.fullmatch(parts.scheme) or not uri.partition(":")[2]:
        raise OAuthError("invalid_target", f"resource {uri!r} must be an absolute URI")
    if any(char.isspace() or not char.isprintable() for char in uri):
        raise OAuthError("invalid_target", f"resource {uri!r} must not contain spaces")
    if parts.fragment or "#" in uri:
        raise OAuthError("invalid_target", f"resource {uri!r} must not have a fragment")
    return urlunsplit(parts._replace(netloc=parts.netloc.lower()))


def resources(
    values: Sequence[str], *, limit: int, parse: Callable[[str], str] = canonical_resource
) -> list[str]:
    """The distinct resources of `values`, each read by `parse`; at most `limit` of them."""
    found = list(dict.fromkeys(parse(value) for value in values if value))
    if len(found) > limit:
        raise OAuthError("invalid_target", f"at most {limit} resources per token")
    return found


def narrowed_resources(requested: list[str], granted: list[str]) -> list[str]:
    """The token's audience: the requested resources if all were granted, else invalid_target."""
    if not requested:
        return granted
    outside = [uri for uri in requested if uri not in granted]
    if outside:
        raise OAuthError("invalid_target", f"resource not granted: {' '.join(outside)}")
    return requested
