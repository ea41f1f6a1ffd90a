"""Who may pass a protected proxy: a decision over the proxy's policy and a token's claims.

Runs on every request to an auth-enabled proxy, so it does no I/O: the token was verified with a
cached key (`oauthproxy.oauth.verify`), revocations are an in-memory set kept fresh by the
supervisor, and the policy below is precomputed whenever the proxy's configuration changes.

The decision is a function of the policy, the claims and the resource (and, for the age of
the login's identity, of the time it is first made: `_identity_stale`), so each policy remembers
its decisions (`authorize`): a client's requests after its first cost one dictionary lookup
here. Expiry and revocation are not part of it: the caller checks both on every request before
asking (`oauthproxy.proxy.guard`), so remembering a decision never lets a token through for
longer than it is valid and unrevoked.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from oauthproxy.models.proxies import AuthMode, ProxyTarget
from oauthproxy.oauth.verify import Claims

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class AccessPolicy:
    """A proxy's auth settings, normalised once."""

    mode: AuthMode
    issuer: str
    users: frozenset[str] | None
    """None: everyone (`*`); otherwise the GitHub logins allowed."""
    emails: tuple[str, ...]
    groups: frozenset[str]
    scopes: frozenset[str]
    audiences: frozenset[str]
    excluded_paths: tuple[str, ...]
    pass_headers: bool
    header_prefix: str
    tenant: bool = False
    """The proxy is an owner token's (not the admin's): its backend learns of a user only what
    the policy checks (`identity_headers`)."""
    identity_max_age: int = 0
    """`OAUTH_IDENTITY_MAX_AGE`: a token whose login (`auth_time`) is older does not pass a
    policy that checks emails or groups (0: no limit)."""
    _decisions: dict[tuple[Claims, str | None], Decision] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    """`authorize`'s answers under this policy, at most `DECISIONS` of them; a changed
    configuration makes a new policy, and with it an empty cache."""

    @classmethod
    def of(
        cls,
        target: ProxyTarget,
        *,
        issuer: str,
        global_users: str,
        proxies: Mapping[str, ProxyTarget | None] | None = None,
        admins: frozenset[str] = frozenset(),
        identity_max_age: int = 0,
    ) -> AccessPolicy:
        """`proxies`: the proxies now, by hostname (at least those the extra audiences name),
        to keep only the audiences that are the target owner's (`own_audiences`); `admins`:
        the hashes of admin tokens, whose proxies are not a tenant's (`tenant`)."""
        owner = target.owner_token_hash
        tenant = owner is not None and owner not in admins
        users = target.auth_required_users
        if users is None:
            users = [u.strip() for u in global_users.split(",") if u.strip()]
        return cls(
            mode=target.auth_mode,
            issuer=issuer.rstrip("/"),
            users=None if "*" in users else frozenset(u.lower() for u in users),
            emails=tuple(e.lower() for e in target.auth_required_emails or ()),
            groups=frozenset(g.lower() for g in target.auth_required_groups or ()),
            scopes=frozenset(target.auth_allowed_scopes or ()),
            audiences=own_audiences(target, issuer, proxies or {})
            if tenant
            else frozenset(target.auth_allowed_audiences or ()),
            excluded_paths=tuple(target.auth_excluded_paths or ()),
            pass_headers=target.auth_pass_headers,
            header_prefix=target.auth_header_prefix,
            tenant=tenant,
            identity_max_age=identity_max_age,
        )

    def excludes(self, path: str) -> bool:
        return path.startswith(self.excluded_paths)  # any of them (none: False)

    @property
    def needed_scope(self) -> str:
        """The scopes a token may show to pass (any one of them), as a `scope` value; empty when
        any scope passes."""
        return " ".join(sorted(self.scopes))


@dataclass(frozen=True)
class Allow:
    headers: Headers
    """Identity headers to add upstream (empty when anonymous or not passed)."""
    claims: Claims | None = field(default=None, compare=False)
    """Who passed (None: anonymous); the request log names the user and OAuth client."""


@dataclass(frozen=True)
class Deny:
    status: int
    error: str
    description: str
    scope: str = ""


Decision = Allow | Deny
DECISIONS = 1024
"""Decisions a policy remembers. Each holds its claims and identity headers (about a kilobyte),
and every protected proxy has its own policy, so the bound is per proxy and kept below the
verifier's (4,096 tokens, shared): a proxy with more clients at once than this recomputes
some decisions (about a microsecond each). When full it forgets them all and starts again."""


def audience_host(audience: str) -> str:
    """The hostname an audience names (a URL's, or the bare value), as proxies are named."""
    return (urlsplit(audience).hostname or audience).lower().rstrip(".")


def own_audiences(
    target: ProxyTarget, issuer: str, proxies: Mapping[str, ProxyTarget | None]
) -> frozenset[str]:
    """An owner's proxy's extra audiences (`auth_allowed_audiences`) but those that name, now,
    another owner's proxy or the issuer: checked when they were written, a name could be
    claimed by another owner later (or freed and claimed), and its tokens would then pass this
    proxy, their Authorization header reaching this owner's backend. (The admin's proxies keep
    all: `AccessPolicy.of`.)"""
    audiences = target.auth_allowed_audiences or ()
    owner = target.owner_token_hash
    issuer_host = audience_host(issuer)
    kept = set()
    for audience in audiences:
        host = audience_host(audience)
        other = proxies.get(host)
        if host != issuer_host and (other is None or other.owner_token_hash == owner):
            kept.add(audience)
    return frozenset(kept)


def _matches_any(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def _for_resource(claims: Claims, resource: str, extra: frozenset[str]) -> bool:
    """`aud` names this resource (its origin, or a path on it) or an allowed extra audience."""
    under = resource + "/"
    return any(a == resource or a.startswith(under) or a in extra for a in claims.audience)


def authorize(policy: AccessPolicy, claims: Claims, resource: str | None) -> Decision:
    """Whether these (already verified, unrevoked) claims may use the proxy at `resource`
    (None: the caller could not name the resource, so the audience is not checked).

    Remembered per policy, keyed by the whole claims (every field, `jti` and `exp` among them)
    and the resource: only verified tokens get here, so only tokens this gateway's keys signed
    can fill it, and it is bounded. The `Allow` returned may be shared between requests: its
    headers are never modified."""
    key = (claims, resource)
    decisions = policy._decisions
    decision = decisions.get(key)
    if decision is None:
        decision = _decide(policy, claims, resource)
        if len(decisions) >= DECISIONS:
            decisions.clear()
        decisions[key] = decision
    return decision


def _decide(policy: AccessPolicy, claims: Claims, resource: str | None) -> Decision:
    if resource is not None and not _for_resource(claims, resource, policy.audiences):
        return Deny(401, "invalid_token", "the token is not meant for this resource")
    if policy.users is not None and claims.username.lower() not in policy.users:
        return Deny(403, "access_denied", "this user may not use this resource")
    if (policy.emails or policy.groups) and _identity_stale(policy, claims):
        return Deny(
            401,
            "invalid_token",
            "the token's GitHub emails, organisations and teams were read at a login longer ago "
            "than OAUTH_IDENTITY_MAX_AGE: log in again",
        )
    if policy.emails and not (claims.email and _matches_any(claims.email.lower(), policy.emails)):
        return Deny(403, "access_denied", "this email may not use this resource")
    if policy.groups and not policy.groups & {g.lower() for g in claims.groups}:
        return Deny(403, "access_denied", "these groups may not use this resource")
    if policy.scopes and not policy.scopes & claims.scopes:
        return Deny(
            403, "insufficient_scope", "the token lacks the scope needed", policy.needed_scope
        )
    return Allow(identity_headers(policy, claims) if policy.pass_headers else [], claims)


def _identity_stale(policy: AccessPolicy, claims: Claims) -> bool:
    """GitHub is asked for a user's emails, organisations and teams only at a login, and every
    token of that login (refreshed ones too) carries them: past `identity_max_age` they no
    longer pass a policy that checks them, whichever of the token's audiences brought it here
    (the refresh grant refuses such sessions for its own resources: `grants._refresh`). Judged
    when a token is first seen under a policy (`authorize` remembers it): at most an access
    token's lifetime late. (A token without `auth_time` was signed before tokens carried it,
    an access token's lifetime ago at most.)"""
    login = claims.authenticated_at
    max_age = policy.identity_max_age
    return bool(max_age) and login is not None and time.time() - login > max_age


def identity_headers(policy: AccessPolicy, claims: Claims) -> Headers:
    """Built once per token and policy: `authorize` remembers the decision that holds them.

    An owner's proxy (`tenant`) passes only what its policy checks: its backend is another
    tenant's, and a browser login to it needs no consent (the gateway's own client), so any
    visitor's GitHub email and organisations and teams (private ones too) reached it unasked.
    The login and id always go; the groups only those the policy names; the email only when the
    policy checks emails. The admin's proxies pass everything."""
    prefix = policy.header_prefix
    groups, email = claims.groups, claims.email or ""
    if policy.tenant:
        groups = tuple(group for group in groups if group.lower() in policy.groups)
        email = email if policy.emails else ""
    fields = {
        "User-Id": claims.subject,
        "User-Name": claims.username,
        "Email": email,
        "Groups": ",".join(groups),
        "Scopes": " ".join(sorted(claims.scopes)),
        "Client-Id": claims.client_id,
    }
    return [
        (f"{prefix}{name}".lower().encode(), printable(value).encode())
        for name, value in fields.items()
    ]


_CONTROLS = {code: " " for code in [*range(32), 127]}


def printable(value: str) -> str:
    """A claim (or other client text) as a header value: control characters (CR, LF, NUL,
    ...) become spaces."""
    return value.translate(_CONTROLS)


def challenge(policy: AccessPolicy, resource: str, deny: Deny | None) -> str:
    """The `WWW-Authenticate` value for a 401/403 (RFC 6750, RFC 9728 `resource_metadata`).

    A 401 names the scopes the proxy needs (MCP 2025-11-25: clients ask for the challenge's
    `scope` on their first authorization, and only then fall back to the metadata's
    `scopes_supported`), as does a 403 `insufficient_scope`."""
    parts = [
        'Bearer realm="Protected Resource"',
        f'resource_metadata="{resource}/.well-known/oauth-protected-resource"',
        f'as_uri="{policy.issuer}/.well-known/oauth-authorization-server"',
        f'resource_uri="{resource}/.well-known/oauth-protected-resource"',
    ]
    if deny is not None:
        parts.append(f'error="{deny.error}"')
        parts.append(f'error_description="{deny.description}"')
    scope = deny.scope if deny is not None else ""
    if not scope and (deny is None or deny.status == 401):
        scope = policy.needed_scope
    if scope:
        parts.append(f'scope="{scope}"')
    return ", ".join(parts)
