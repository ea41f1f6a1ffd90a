"""Header rewriting between client and upstream. Pure functions over (name, value) lists.

Our reader lower-cases header names; we send them lower-cased (HTTP/1.1 names are
case-insensitive). Framing headers (content-length, transfer-encoding) stay: each body is framed
on the way out from them (see `oauthproxy.proxy.http.Framing`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Headers = list[tuple[bytes, bytes]]
Identity = Sequence[tuple[bytes, bytes]]
"""Headers naming the verified user, added to a protected proxy's upstream requests."""

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"expect",
    }
)
FORWARDING = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip", b"forwarded"}
)
"""The forwarding headers the gateway sets or reads; every other `X-Forwarded-*` a client sends
(`-Port`, `-Prefix`, `-Ssl`, ..., which frameworks build URLs from) is dropped as well."""
CLIENT_ADDRESS = frozenset(
    {
        b"client-ip",  # PHP's HTTP_CLIENT_IP
        b"true-client-ip",  # Akamai, Cloudflare
        b"cf-connecting-ip",
        b"fastly-client-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"x-original-forwarded-for",  # ingress-nginx
        b"x-remote-ip",
        b"x-remote-addr",
    }
)
"""What other balancers name the client's address in, dropped from clients' requests: a backend
(or a framework or firewall in front of it) that reads one got the client's own claim (an
address allowlist passed, a per-address limit dodged). The gateway's answer is `X-Real-IP` and
`X-Forwarded-For`."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """`TRUSTED_PROXIES` entries (addresses or CIDRs) as networks."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def is_trusted(peer_ip: str, networks: Sequence[Network]) -> bool:
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    return any(address in network for network in networks)


@dataclass(frozen=True)
class Client:
    """Who sent the request, as far as we can tell."""

    ip: str
    trusted: bool
    scheme: bytes = b"http"
    tls_names: frozenset[str] = frozenset()
    """Over TLS: the names the connection's certificate covers; its requests may name only
    these hosts (any other gets a 421)."""
    unnamed: bool = False
    """Behind the PROXY protocol, a header that names no client (v1 UNKNOWN, v2 LOCAL or an
    address-less family): `ip` is then the balancer's, but the client is unknown, so it is
    neither trusted nor loopback, whatever the balancer's own address."""
    own_forwarding: tuple[bytes, bytes, bytes] = field(init=False, repr=False, compare=False)
    """X-Forwarded-For, -Proto and X-Real-IP as we say them ourselves (`_forwarded_values`
    for a client that is not trusted: the same for each of its requests, made once)."""

    def __post_init__(self) -> None:
        ip = self.ip.encode()
        object.__setattr__(self, "own_forwarding", (ip, self.scheme, ip))


@dataclass(frozen=True)
class RequestRewrite:
    """What an instance's configuration says about outgoing requests, precomputed once."""

    preserve_host: bool
    upstream_host: bytes
    custom: Headers
    strip_prefix: tuple[bytes, ...]
    """Client-sent headers with one of these prefixes (lower-case, `_` read as `-`: see
    `identity_prefix`) are identity claims we never pass on."""
    dropped: frozenset[bytes] = field(init=False)
    """Client headers never passed on: hop-by-hop, forwarding, client addresses, and those we
    set ourselves."""

    def __post_init__(self) -> None:
        custom_names = frozenset(name for name, _ in self.custom)
        dropped = HOP_BY_HOP | FORWARDING | CLIENT_ADDRESS | custom_names | {b"host"}
        object.__setattr__(self, "dropped", dropped)


def identity_prefix(configured: str) -> bytes:
    """An `auth_header_prefix` as client headers are compared with it: lower-case, `_` read as
    `-`. A client's `X-Auth-User` under the prefix `X_Auth_` reached the backend beside the
    gateway's `X_Auth_User`, and a WSGI/CGI backend reads both as `HTTP_X_AUTH_USER`."""
    return configured.lower().replace("_", "-").encode()


FRAMING = frozenset({b"content-length", b"transfer-encoding"})
"""What frames a message's body on its way out (see the module docstring): never removed for
being listed in Connection, or the body would go out without them and be read as the next
message (`Connection: content-length` smuggled a request past routing and the auth check)."""


def _listed(connection: bytes) -> frozenset[bytes]:
    """The header names a Connection header lists (they are hop-by-hop too), but for `FRAMING`."""
    return frozenset(token.strip().lower() for token in connection.split(b",")) - FRAMING


_cached_listed = functools.lru_cache(maxsize=256)(_listed)
"""`_listed`, cached: nearly every message says `keep-alive` or `close`."""

CACHED_CONNECTION_LENGTH = 128
"""Longer Connection values are not cached: 256 of nearly 64 KiB each (with every option they
list) held ~155 MiB for the process's life, from anonymous requests or a backend's answers."""


def _tokens(connection: bytes) -> frozenset[bytes]:
    if len(connection) > CACHED_CONNECTION_LENGTH:
        return _listed(connection)
    return _cached_listed(connection)


def _forwarded_values(
    headers: Iterable[tuple[bytes, bytes]], client: Client
) -> tuple[bytes, bytes, bytes]:
    """X-Forwarded-For, -Proto and X-Real-IP: appended to a trusted peer's, ours otherwise.
    Behind a trusted peer, X-Real-IP is the address that peer saw (the last hop of the chain it
    sent), never an X-Real-IP it passed on: balancers that append to X-Forwarded-For (haproxy's
    `option forwardfor`, cloud load balancers) leave the client's own X-Real-IP in place."""
    if not client.trusted:
        return client.own_forwarding
    ip = client.ip.encode()
    earlier = [value for name, value in headers if name == b"x-forwarded-for"]
    chain = b", ".join([*earlier, ip]) if earlier else ip
    proto = next((v for n, v in headers if n == b"x-forwarded-proto"), client.scheme)
    return chain, proto, _last_hop(earlier) or ip


def _last_hop(chain: list[bytes]) -> bytes | None:
    """The last address of X-Forwarded-For values (what the peer that sent them saw), or None
    when there is none or it is no address."""
    if not chain:
        return None
    hop = chain[-1].rpartition(b",")[2].strip()
    try:
        ipaddress.ip_address(hop.decode("latin-1"))
    except ValueError:
        return None
    return hop


def upstream_request_headers(
    headers: Iterable[tuple[bytes, bytes]],
    rewrite: RequestRewrite,
    client: Client,
    *,
    upgrade: bool,
    identity: Identity = (),
) -> Headers:
    """The headers we send upstream for a client request with `headers` (one pass: hot path).
    `identity`: the verified user's headers, when the proxy is protected."""
    dropped = rewrite.dropped
    prefix = rewrite.strip_prefix
    host = b""
    connection = b""
    out: Headers = []
    for name, value in headers:
        if name in dropped:
            if name == b"host":
                host = value
            elif name == b"connection":  # every line's options count (RFC 9110 §7.6.1)
                connection = connection + b"," + value if connection else value
        elif not (prefix and name.startswith(prefix)) and not name.startswith(b"x-forwarded-"):
            if b"_" in name and _owned(name.replace(b"_", b"-"), dropped, prefix):
                continue
            out.append((name, value))
    if connection:
        listed = _tokens(connection)
        if not listed <= dropped:  # (what `dropped` names is not in `out` already)
            out = [(name, value) for name, value in out if name not in listed]
    chain, proto, real_ip = (
        _forwarded_values(headers, client) if client.trusted else client.own_forwarding
    )
    out.append((b"host", host if rewrite.preserve_host and host else rewrite.upstream_host))
    out.append((b"x-forwarded-for", chain))
    out.append((b"x-forwarded-proto", proto))
    if host:
        out.append((b"x-forwarded-host", host))
    out.append((b"x-real-ip", real_ip))
    out.extend(rewrite.custom)
    out.extend(identity)
    if upgrade:
        out.extend(UPGRADE_HEADERS)
    return out


def _owned(name: bytes, dropped: frozenset[bytes], prefix: tuple[bytes, ...]) -> bool:
    """Whether `name` (with `_` read as `-`) is a header the gateway sets itself. CGI and WSGI
    servers (and the frameworks on them) read `X_Auth_User` as `X-Auth-User`, so a client's
    underscore spelling would sit beside ours, or stand in for it; nginx drops them too."""
    return (
        name in dropped
        or (bool(prefix) and name.startswith(prefix))
        or name.startswith(b"x-forwarded-")
    )


UPGRADE_HEADERS = ((b"connection", b"upgrade"), (b"upgrade", b"websocket"))
"""The only protocol switch the gateway passes on. After a 101 it copies bytes unread, so a
switch to HTTP/2 (`h2c`) or to anything else that carries requests would let them past routing,
the auth check and the header rewrite."""
_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def websocket_accepted(
    request: Iterable[tuple[bytes, bytes]], response: Iterable[tuple[bytes, bytes]]
) -> bool:
    """Whether a 101 with `response` headers accepts the WebSocket `request` asked for:
    its `Sec-WebSocket-Accept` is the request key's hash (RFC 6455 section 4.2.2). A backend that
    answers 101 without switching (an endpoint echoing a status code) would otherwise open a raw
    tunnel to itself."""
    key = _first(request, b"sec-websocket-key")
    expected = base64.b64encode(hashlib.sha1(key + _WEBSOCKET_GUID).digest())  # noqa: S324 (RFC 6455)
    return bool(key) and hmac.compare_digest(_first(response, b"sec-websocket-accept"), expected)


def _first(headers: Iterable[tuple[bytes, bytes]], wanted: bytes) -> bytes:
    return next((value for name, value in headers if name == wanted), b"")


@dataclass(frozen=True)
class ResponseRewrite:
    """What an instance's configuration says about responses, precomputed once."""

    custom: Headers
    dropped: frozenset[bytes] = field(init=False)

    def __post_init__(self) -> None:
        custom_names = frozenset(name for name, _ in self.custom)
        object.__setattr__(self, "dropped", HOP_BY_HOP | custom_names)


def client_response_headers(
    headers: Iterable[tuple[bytes, bytes]], rewrite: ResponseRewrite, *, switching: bool
) -> Headers:
    """The headers we send the client for an upstream response with `headers` (hot path)."""
    dropped = rewrite.dropped
    connection = b""
    out: Headers = []
    for name, value in headers:
        if name not in dropped:
            out.append((name, value))
        elif name == b"connection":  # every line's options count (RFC 9110 §7.6.1)
            connection = connection + b"," + value if connection else value
    if connection:
        listed = _tokens(connection)
        if not listed <= dropped:  # (`keep-alive`, `close`: nothing more to take out)
            out = [(name, value) for name, value in out if name not in listed]
    if switching:
        out.extend(UPGRADE_HEADERS)
    out.extend(rewrite.custom)
    return out


def encode_headers(values: dict[str, str]) -> Headers:
    return [(name.lower().encode(), value.encode()) for name, value in values.items()]
