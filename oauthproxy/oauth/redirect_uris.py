"""Redirect URIs: what may be registered, and whether a presented one matches (exactly, except
for the port of a loopback URI, RFC 8252 section 7.3)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
MAX_LENGTH = 2000
_LDH = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?")
"""A hostname as DNS and every URL parser read it alike: letters, digits, hyphens, dots."""


def _split(uri: str) -> SplitResult | None:
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None
    return parts


def is_loopback(parts: SplitResult) -> bool:
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def host_problem(parts: SplitResult) -> str | None:
    """Why the URI's host is not one host every reader agrees on, or None: an IP literal, or a
    name whose ASCII (IDNA) form is an LDH hostname. A name that is not (`evil.example\uff3c
    paypal.com`: IDNA maps the fullwidth reverse solidus to `\\`, where a browser ends the
    host) would be shown as one place while the browser goes to another."""
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    try:
        name = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        name = ""
    if _LDH.fullmatch(name) is None:
        return "its host is not a hostname (letters, digits, hyphens and dots, or IDNA) or an IP"
    return None


def registration_problem(uri: str) -> str | None:
    """Why `uri` cannot be registered as a redirect URI, or None: an absolute https URI, or
    http on a loopback host (for native clients); its host a hostname or an IP literal
    (`host_problem`); no fragment, no credentials."""
    parts = _split(uri) if len(uri) <= MAX_LENGTH else None
    if parts is None or not parts.scheme or not parts.hostname:
        return f"{uri!r} is not an absolute URI"
    if (problem := host_problem(parts)) is not None:
        return f"{uri!r}: {problem}"
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


def ascii_host(host: str) -> str:
    """`host` as the browser resolves it: an internationalised name in its ASCII (punycode,
    `xn--`) form, so a homograph (`p\\u0430ypal.example`, with a Cyrillic a) reads as what it is.
    A name IDNA cannot encode keeps its ASCII and has the rest percent-encoded: never shown
    as Unicode. Anything but letters, digits, hyphens and dots left in the ASCII form (a `\\`
    IDNA made of a fullwidth reverse solidus) is percent-encoded too: never shown as what a
    browser would read as the end of the host."""
    try:
        name = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        name = host
    return "".join(
        c if c.isascii() and (c.isalnum() or c in ".-") else quote(c, safe="") for c in name
    )


def _ascii_only(text: str) -> str:
    """`text` with every character outside printable ASCII (and the space) percent-encoded
    (as UTF-8); what is there already, `%` escapes included, as it is."""
    return "".join(c if " " < c < "\x7f" else quote(c, safe="") for c in text)


def ascii_netloc(parts: SplitResult) -> str:
    """The URI's host and port in ASCII (`ascii_host`); credentials are never shown."""
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    shown = f"[{host}]" if ":" in host else ascii_host(host)
    return shown if port is None else f"{shown}:{port}"


def ascii_uri(uri: str) -> str:
    """`uri` as a browser sends it: the host in ASCII (`ascii_host`), anything else outside
    printable ASCII in its path and query percent-encoded; an ASCII URI as it is. What the
    consent and refused pages show, and where their links and redirects lead: the same."""
    if uri.isascii() and uri.isprintable() and " " not in uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return _ascii_only(uri)
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = ascii_netloc(parts) if parts.hostname else _ascii_only(parts.netloc)
    if userinfo and parts.hostname:
        netloc = f"{_ascii_only(userinfo)}@{netloc}"
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            _ascii_only(parts.path),
            _ascii_only(parts.query),
            _ascii_only(parts.fragment),
        )
    )
