"""Binding a step of a login to the browser that took the step before it. Pure.

A login crosses the browser several times carrying a secret-looking value in the URL (`state`, the
consent request id). Whoever holds that URL could finish the login in *their* browser, or make a
victim's browser finish the attacker's own login (login CSRF, RFC 6749 section 10.12). So the step
that hands out the value also sets a cookie with a fresh random token on that browser, and stores
only the token's hash; the next step goes on only when the browser shows the token whose hash was
stored, compared in constant time.

Each pending login gets its own cookie name (derived from its `state`), so logins started in
several tabs of one browser do not overwrite each other's binding.

Over HTTPS every such cookie is a `__Host-` cookie (Secure, path `/`, no Domain), set and read
under that name (`host_cookie`): a sibling host (tenant.example.com) may set a cookie for
example.com, which the browser then also sends to auth.example.com; only the host itself can set
a `__Host-` one. Plain http keeps the plain name and path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

LOGIN_COOKIE_PREFIX = "oauthproxy_login_"


def new_browser_token() -> str:
    return secrets.token_urlsafe(32)


def browser_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_browser(stored_hash: str, presented_token: str | None) -> bool:
    """Whether the presented cookie is the one whose hash was stored. An empty stored hash
    (nothing was bound) never matches."""
    if not stored_hash or not presented_token:
        return False
    return hmac.compare_digest(stored_hash.encode(), browser_hash(presented_token).encode())


def login_cookie_name(state: str) -> str:
    """The cookie that binds the login of `state` (a digest of it: the cookie name says nothing
    about the state, and is a valid cookie name whatever the state holds)."""
    return LOGIN_COOKIE_PREFIX + hashlib.sha256(state.encode()).hexdigest()[:16]


HOST_PREFIX = "__Host-"


def host_cookie(name: str, path: str, *, secure: bool) -> tuple[str, str]:
    """The name and path a cookie is set and read under: over HTTPS (`secure`) `__Host-name`
    at `/`, which no other host can plant (cookie tossing); over plain http `name` at `path`."""
    return (HOST_PREFIX + name, "/") if secure else (name, path)
