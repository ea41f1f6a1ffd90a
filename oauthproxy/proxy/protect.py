"""A protected proxy's front door: protected resource metadata (RFC 9728) and bearer checks.

Pure apart from the clock: given a request's headers, the proxy's protection and the guard, it
says whether to answer here (metadata, 401, 403) or forward, and with which identity headers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oauthproxy.models.proxies import GATEWAY_METADATA, AuthMode, ProxyTarget
from oauthproxy.oauth.browser import HOST_PREFIX, host_cookie
from oauthproxy.oauth.verify import InvalidToken
from oauthproxy.proxy.access import AccessPolicy, Allow, Deny, authorize, challenge
from oauthproxy.proxy.guard import Guard
from oauthproxy.proxy.headers import Headers
from oauthproxy.proxy.http import BadRequest
from oauthproxy.proxy.responses import Reply, error_reply

METADATA_PATH = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True)
class Protection:
    """What an instance does about OAuth, precomputed from its proxy target."""

    target: ProxyTarget
    issuer: str
    policy: AccessPolicy | None
    """None: requests are not checked (auth disabled)."""
    serves_metadata: bool
    guard: Guard

    @classmethod
    def of(
        cls,
        target: ProxyTarget,
        *,
        issuer: str,
        global_users: str,
        guard: Guard,
        proxies: Mapping[str, ProxyTarget] | None = None,
        admins: frozenset[str] = frozenset(),
        identity_max_age: int = 0,
    ) -> Protection:
        """`proxies`: every proxy, by hostname; `admins`: the admin tokens' hashes (see
        `AccessPolicy.of`)."""
        policy = (
            AccessPolicy.of(
                target,
                issuer=issuer,
                global_users=global_users,
                proxies=proxies,
                admins=admins,
                identity_max_age=identity_max_age,
            )
            if target.auth_enabled
            else None
        )
        serves = target.auth_enabled or target.resource_override_backend
        return cls(target, issuer.rstrip("/"), policy, serves, guard)


def is_metadata_path(path: str) -> bool:
    return path == METADATA_PATH or path.startswith(METADATA_PATH + "/")


def metadata_reply(protection: Protection, origin: str) -> Reply:
    """The proxy's protected-resource metadata (RFC 9728); its custom metadata adds fields, and
    never replaces the resource, the authorization server or the keys (a proxy stored before
    that rule cannot claim another owner's resource either)."""
    target = protection.target
    document: dict[str, Any] = {
        "resource": origin,
        "authorization_servers": [protection.issuer],
        "jwks_uri": f"{protection.issuer}/jwks",
        "scopes_supported": _scopes_supported(protection),
        "bearer_methods_supported": target.resource_bearer_methods or ["header"],
    }
    if target.resource_documentation_suffix:
        document["resource_documentation"] = origin + target.resource_documentation_suffix
    if target.resource_server_info:
        document["resource_server_info"] = target.resource_server_info
    if target.resource_versions:
        document["resource_versions"] = target.resource_versions
    custom = target.resource_custom_metadata or {}
    document.update({key: value for key, value in custom.items() if key not in GATEWAY_METADATA})
    body = json.dumps(document).encode()
    return Reply(200, [(b"content-type", b"application/json")], body, "resource_metadata")


DEFAULT_SCOPES = ("mcp:read", "mcp:write")


def _scopes_supported(protection: Protection) -> list[str]:
    """The proxy's own list, else the defaults plus any scope the proxy requires (a client
    that reads only the metadata must be able to ask for what it will need)."""
    if protection.target.resource_scopes:
        return protection.target.resource_scopes
    required = protection.policy.scopes if protection.policy else frozenset()
    return sorted(set(DEFAULT_SCOPES) | required)


def bearer_token(received: Headers) -> str | None:
    """The token of `Authorization: Bearer …` (the only place a token is accepted). Runs on
    every protected request: the value is sliced as bytes and decoded once. A second
    Authorization line is a `BadRequest`: the backend, which gets them all, could act on one
    nobody checked."""
    authorization: bytes | None = None
    for name, value in received:
        if name == b"authorization":
            if authorization is not None:
                raise BadRequest("a request may carry only one Authorization header")
            authorization = value
    if authorization is None or authorization[:7].lower() != b"bearer ":
        return None
    token = authorization[7:].strip()
    return token.decode("latin-1") if token else None


def _refusal(policy: AccessPolicy, origin: str, deny: Deny | None) -> Reply:
    status = deny.status if deny is not None else 401
    body = {
        "error": deny.error if deny is not None else "unauthorized",
        "detail": deny.description if deny is not None else "a bearer token is required",
    }
    headers = [
        (b"content-type", b"application/json"),
        (b"www-authenticate", challenge(policy, origin, deny).encode()),
    ]
    return Reply(status, headers, json.dumps(body).encode(), body["error"])


def cookie_token(received: Headers, name: str) -> str | None:
    for header_name, value in received:
        if header_name == b"cookie":
            for pair in value.decode("latin-1").split(";"):
                key, _, token = pair.strip().partition("=")
                if key == name and token:
                    return token
    return None


def without_cookie(received: Headers, name: str) -> Headers:
    """`received` without our auth cookie (under its plain and its `__Host-` name): the backend
    gets the identity headers, never the token itself."""
    for header, _ in received:  # (a loop: cheaper than `any` on this per-request path)
        if header == b"cookie":
            break
    else:
        return received
    prefix = (name + "=", HOST_PREFIX + name + "=")
    out: Headers = []
    for header, value in received:
        if header == b"cookie":
            kept = [
                p for p in value.decode("latin-1").split(";") if not p.strip().startswith(prefix)
            ]
            if not any(p.strip() for p in kept):
                continue
            value = ";".join(kept).strip().encode("latin-1")
        out.append((header, value))
    return out


@dataclass(frozen=True)
class NeedsLogin:
    """A browser without a valid token on a `redirect`-mode proxy: send it to log in."""


def _wants_page(received: Headers) -> bool:
    accept = next((v for n, v in received if n == b"accept"), b"")
    return b"text/html" in accept


def check(
    protection: Protection,
    received: Headers,
    origin: str,
    path: str,
    encoded_separator: bool = False,
) -> Reply | Allow | NeedsLogin:
    """Answer (400/401/403), send a browser to log in, or let through with identity headers.

    `path` is normalised (`oauthproxy.proxy.request`); `encoded_separator`: it holds `%2F` or
    `%5C`, which a backend may decode into a separator and resolve out of an excluded path
    (`/public%2F..%2Fsecret`), so such a path is refused there rather than let through."""
    policy = protection.policy
    if policy is None:
        return Allow([])
    if policy.excludes(path):
        if encoded_separator:
            detail = "an encoded / or \\ is refused in a path that needs no token"
            return error_reply(400, "bad_request", detail)
        return Allow([])
    redirect = policy.mode is AuthMode.REDIRECT
    try:
        token = bearer_token(received)
    except BadRequest as error:
        return error_reply(400, "bad_request", str(error))
    if token is None and redirect:
        secure = origin.startswith("https://")
        name = host_cookie(protection.target.auth_cookie_name, "/", secure=secure)[0]
        token = cookie_token(received, name)
    optional = policy.mode is AuthMode.PASSTHROUGH
    login = redirect and _wants_page(received)
    if token is None:
        if login:
            return NeedsLogin()
        return Allow([]) if optional else _refusal(policy, origin, None)
    try:
        claims = protection.guard.claims(token, now=time.time())
    except InvalidToken as error:
        if optional:
            return Allow([])
        if login:
            return NeedsLogin()
        return _refusal(policy, origin, Deny(401, "invalid_token", error.reason))
    decision = authorize(policy, claims, origin)
    if isinstance(decision, Deny):
        return _refusal(policy, origin, decision)
    return decision
