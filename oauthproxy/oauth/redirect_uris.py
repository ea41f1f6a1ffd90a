"""Redirect URIs: what may be registered, and whether a presented one matches (exactly, except
for the port of a loopback URI, RFC 8252 section 7.3)."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
MAX_LENGTH = 2000


def _split(uri: str) -> SplitResult | None:
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None
    return parts


def is_loopback(parts: SplitResult) -> bool:
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def registration_problem(uri: str) -> str | None:
    """Why `uri` cannot be registered as a redirect URI, or None: an absolute https URI, or
    http on a loopback host (for native clients); no fragment, no credentials."""
    parts = _split(uri) if len(uri) <= MAX_LENGTH else None
    if parts is None or not parts.scheme or not parts.hostname:
        return f"{uri!r} is not an absolute URI"
    if parts.fragment or "#" in uri:
        return f"{uri!r} has a fragment"
    if parts.username is not None or parts.password is not None:
        return f"{uri!r} carries credentials"
    if parts.scheme != "https" and not is_loopback(parts):
        return f"{uri!r} must use https (http only on localhost, 127.0.0.1 or [::1])"
    return None


def matches(registered: str, presented: str) -> bool:
    if registered == presented:
        return True
    ours, theirs = _split(registered), _split(presented)
    if ours is None or theirs is None or not (is_loopback(ours) and is_loopback(theirs)):
        return False
    return (ours.hostname, ours.path, ours.query, ours.fragment, ours.username) == (
        theirs.hostname,
        theirs.path,
        theirs.query,
        theirs.fragment,
        theirs.username,
    )


def find_match(registered: list[str], presented: str) -> bool:
    return any(matches(candidate, presented) for candidate in registered)
