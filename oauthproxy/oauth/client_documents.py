"""Client ID Metadata Documents: an https URL as `client_id`, fetched with SSRF protection.

The host is resolved once and every address it resolves to must be public (loopback only when
OAUTH_CIMD_ALLOW_LOOPBACK is set, for tests); the request then goes to that vetted address (the
TLS certificate is still checked against the host name), so DNS cannot be re-pointed in between.
No redirects, 5 KiB and 5 seconds at most. The document's `client_id` must be its URL exactly; it
describes a public client (`token_endpoint_auth_method: none`).
"""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx
import trio

from oauthproxy.models.oauth import ClientOrigin, OAuthClient
from oauthproxy.oauth.client_metadata import PUBLIC, parse_metadata
from oauthproxy.oauth.errors import OAuthError
from oauthproxy.oauth.redirect_uris import host_problem

MAX_DOCUMENT_BYTES = 5 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
CACHE_SECONDS = (60, 3600)
"""The least and the most a metadata document is cached, whatever its `max-age` says: a day
let one address keep ~86,000 documents cached (60 new URLs a minute), an hour ~3,600."""
DEFAULT_CACHE_SECONDS = 300
_MAX_AGE = re.compile(r"max-age=(\d+)")


class ClientDocumentError(Exception):
    """The client_id URL or its document is unusable; the message is safe to show."""


def is_document_url(client_id: str) -> bool:
    return client_id.startswith("https://")


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a client_id: https with a host (a hostname or an IP literal, as a
    redirect URI's: `host_problem`) and a path, no fragment, no credentials, no dot
    segments."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "the client_id is not a URL"
    if parts.scheme != "https" or not parts.hostname or len(url) > 2000:
        return "a URL client_id must be an https URL"
    if host_problem(parts) is not None:
        return "a URL client_id must have a hostname (letters, digits, hyphens, dots) or an IP"
    if parts.path in {"", "/"} or {".", ".."} & set(parts.path.split("/")):
        return "a URL client_id must have a path (and no . or .. segments)"
    if parts.fragment or "#" in url or parts.username is not None:
        return "a URL client_id must have no fragment and no credentials"
    return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
"""The well-known NAT64 prefix (RFC 6052): on a DNS64/NAT64 network, 64:ff9b::a00:5 is 10.0.0.5."""
_TRANSLATED = (
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215): any IPv4 behind it
    ipaddress.IPv6Network("2001::/32"),  # Teredo: an obfuscated IPv4 address
)


def _embedded(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: mapped, NAT64, IPv4-compatible (::a.b.c.d)
    or 6to4 (2002::/16), which Python's `is_global` judges as IPv6 (global) instead."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1):  # (not :: or ::1)
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _allowed(address: str, allow_loopback: bool) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.split("%", 1)[0]
    )
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local or any(ip in network for network in _TRANSLATED):
            return False
        ip = _embedded(ip) or ip
    if ip.is_loopback:
        return allow_loopback
    return ip.is_global and not ip.is_multicast


async def _vetted_addresses(host: str, port: int, allow_loopback: bool) -> list[str]:
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    except OSError:
        raise ClientDocumentError(f"{host} does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses or not all(_allowed(address, allow_loopback) for address in addresses):
        raise ClientDocumentError(f"{host} resolves to an address that is not public")
    return addresses


def _cache_seconds(response: httpx.Response) -> int:
    found = _MAX_AGE.search(response.headers.get("cache-control", ""))
    seconds = int(found.group(1)) if found else DEFAULT_CACHE_SECONDS
    return min(max(seconds, CACHE_SECONDS[0]), CACHE_SECONDS[1])


async def _get(client: httpx.AsyncClient, address: str, parts: SplitResult) -> tuple[Any, int]:
    host = f"[{address}]" if ":" in address else address
    target = urlunsplit(("https", f"{host}:{parts.port or 443}", parts.path, parts.query, ""))
    headers = {"Host": parts.netloc, "Accept": "application/json"}
    extensions = {"sni_hostname": parts.hostname or ""}
    async with client.stream("GET", target, headers=headers, extensions=extensions) as response:
        if response.status_code != 200:
            raise ClientDocumentError(
                f"the client metadata document answered {response.status_code}"
            )
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise ClientDocumentError("the client metadata document is larger than 5 KiB")
    try:
        return json.loads(body), _cache_seconds(response)
    except ValueError:
        raise ClientDocumentError("the client metadata document is not JSON") from None


async def fetch_document(
    url: str, *, allow_loopback: bool, tls: ssl.SSLContext | bool
) -> tuple[Any, int]:
    """The decoded document at `url` and how long it may be cached (seconds)."""
    problem = url_problem(url)
    if problem is not None:
        raise ClientDocumentError(problem)
    parts = urlsplit(url)
    try:
        with trio.fail_after(FETCH_TIMEOUT_SECONDS):
            addresses = await _vetted_addresses(
                parts.hostname or "", parts.port or 443, allow_loopback
            )
            async with httpx.AsyncClient(verify=tls, follow_redirects=False) as client:
                return await _first_reachable(client, addresses, parts)
    except trio.TooSlowError:
        raise ClientDocumentError("the client metadata document took too long") from None


async def _first_reachable(
    client: httpx.AsyncClient, addresses: list[str], parts: SplitResult
) -> tuple[Any, int]:
    for address in addresses:
        try:
            return await _get(client, address, parts)
        except httpx.ConnectError:
            continue
        except httpx.HTTPError as error:
            raise ClientDocumentError(f"fetching it failed: {type(error).__name__}") from None
    raise ClientDocumentError("the client metadata document's host cannot be reached")


def document_client(url: str, document: Any) -> OAuthClient:
    """The client a fetched document describes; ClientDocumentError when it does not qualify."""
    if not isinstance(document, dict) or document.get("client_id") != url:
        raise ClientDocumentError("the document's client_id is not its URL")
    if "client_secret" in document or "client_secret_expires_at" in document:
        raise ClientDocumentError("a client metadata document must not carry a client_secret")
    if not isinstance(document.get("client_name"), str) or not document["client_name"]:
        raise ClientDocumentError("the document has no client_name")
    try:
        metadata = parse_metadata(document, token_endpoint_auth_method=PUBLIC)
    except OAuthError as error:
        raise ClientDocumentError(error.description) from None
    if metadata.token_endpoint_auth_method != PUBLIC:
        raise ClientDocumentError("only public clients (token_endpoint_auth_method none)")
    return metadata.client(url, ClientOrigin.METADATA_DOCUMENT)
