"""One normalised view of each request: the host and the path that routing, auth and forwarding
all see, made once per request, so that they can never disagree about where a request goes.

Pure: a request head in, a `RequestView` out (or `BadRequest`, a 400). What it decides:

- **One Host.** More than one `Host` header, or an absolute-form target (`GET http://a/x`) whose
  authority differs from `Host`, is a 400 (RFC 9112 §3.2); so is an HTTP/1.1 request without
  one. The host is compared lower-case, without a trailing dot and without its port: it picks
  the instance, it is checked against a TLS connection's certificate, and with the port (unless
  it is the scheme's default) it is the origin a protected proxy's tokens are issued for.
- **One path.** Percent-encoded unreserved characters are decoded (`%2e` is `.`, `%41` is `A`:
  RFC 3986 §6.2.2.2), repeated slashes are merged, and dot segments are removed (§5.2.4).
  The result is matched against routes and `auth_excluded_paths` and is what the backend gets,
  so `/public/../secret` and `/public/%2e%2e/secret` are `/secret` everywhere.
  Encoded separators (`%2F`, `%5C`) stay encoded: they are data to us, but a backend that
  decodes them may see other segments, so `has_encoded_separator` lets the auth check refuse
  them where they could leave an excluded path. A raw backslash is a 400, and so is a dot
  segment with `;` parameters (`..;`, or `..%3B`), which Java servers resolve as `..`.
- **Origin-form out.** An absolute-form target is forwarded as its path and query.
- **One framing.** `Transfer-Encoding` is `chunked` alone, in HTTP/1.1 (501 otherwise): llhttp
  accepts any codings before a final `chunked`, which a backend could read otherwise.

The common case costs a few substring checks: a path without `.`, `%`, `//` or `\\` is already
normal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

from oauthproxy.proxy.codec import Head
from oauthproxy.proxy.framing import Headers
from oauthproxy.proxy.http import BadRequest

_DEFAULT_PORTS = {b"http": "80", b"https": "443"}
_HOST_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")
_IPV6_CHARACTERS = frozenset("0123456789abcdef:.")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
MAX_HOST_LENGTH = 253
"""A DNS name's most (an IPv6 literal's, bracketed, is shorter): a longer Host is refused, not
logged and indexed under its whole length."""
_ENCODED_SEPARATORS = ("%2F", "%5C")


class RequestView(NamedTuple):
    """A request as routing, auth and forwarding see it. (A named tuple, not a frozen
    dataclass: made on every request, and a third of the cost to build.)"""

    host: str
    """Lower-case, no port, no trailing dot ("" for an HTTP/1.0 request without one)."""
    authority: str
    """`host`, with `:port` when the port is not the scheme's default: the origin's authority
    and the `Host` a backend gets when the proxy preserves it."""
    path: str
    """Normalised (see the module docstring); `*` for `OPTIONS *`."""
    query: str
    """The query as received, with its `?` ("" when there is none)."""
    target: bytes
    """What the backend gets as the request target: `path` + `query`, in origin-form."""
    has_encoded_separator: bool = False
    """The path holds `%2F` or `%5C` (which a backend might decode into a separator)."""
    headers: Headers = []  # shared by views made without headers (tests); never mutated
    """The request's headers, with its one `Host` set to `authority` (the head's own list
    when it already was)."""


_new_view: Callable[[tuple[str, str, str, str, bytes, bool, Headers]], RequestView] = (
    functools.partial(tuple.__new__, RequestView)
)
"""`RequestView(...)` without its generated `__new__` (a Python call): all fields given."""


def view_of(head: Head, scheme: bytes) -> RequestView:
    """The normalised view of a request head received over `scheme` (b"http" or b"https")."""
    host_value: bytes | None = None
    for name, value in head.headers:
        if name == b"host":
            if host_value is not None:
                raise BadRequest("a request may carry only one Host header")
            host_value = value
        elif name == b"transfer-encoding" and (
            value.lower() != b"chunked" or head.version == b"1.0"
        ):  # llhttp took `gzip` then `chunked`; a backend reading `gzip` would frame otherwise
            raise BadRequest("only the chunked transfer coding is accepted (HTTP/1.1)", 501)
    has_host_line = host_value is not None
    target = head.target
    if target[:1] == b"/":
        raw = target.decode("latin-1")
    elif target == b"*" and head.method == b"OPTIONS":
        raw = "*"
    else:
        scheme, raw, authority = _absolute_form(target)
        if host_value is None:  # (HTTP/1.0: the target's authority is the host)
            if head.version != b"1.0":
                raise BadRequest("an HTTP/1.1 request needs a Host header")
            host_value = authority
        elif _host_and_authority(host_value, scheme) != _host_and_authority(authority, scheme):
            raise BadRequest("the Host header and the request target name different hosts")
    headers = head.headers
    if host_value is None:
        if head.version != b"1.0":
            raise BadRequest("an HTTP/1.1 request needs a Host header")
        host, authority_text = "", ""
    else:
        host, authority_text, authority_bytes = _host_and_authority(host_value, scheme)
        if host_value != authority_bytes or not has_host_line:
            headers = [(n, v) for n, v in headers if n != b"host"] + [(b"host", authority_bytes)]
    path, question, query = raw.partition("?")
    query = question + query
    normal = normalise_path(path) if path != "*" else path
    encoded = normal is not path and _has_encoded_separator(normal)
    out = target if normal is path and target[:1] == b"/" else (normal + query).encode("latin-1")
    return _new_view((host, authority_text, normal, query, out, encoded, headers))


def _absolute_form(target: bytes) -> tuple[bytes, str, bytes]:
    """(scheme, path and query, authority) of `http://authority/path?query`."""
    scheme, separator, rest = target.partition(b"://")
    scheme = scheme.lower()
    if not separator or scheme not in _DEFAULT_PORTS:
        raise BadRequest("the request target is neither a path nor an http(s) URL")
    end = len(rest)
    for delimiter in (b"/", b"?"):
        found = rest.find(delimiter)
        if found != -1:
            end = min(end, found)
    authority, path = rest[:end], rest[end:]
    if b"@" in authority or not authority:
        raise BadRequest("the request target's authority is not a host")
    raw = path.decode("latin-1")
    return scheme, raw if raw.startswith("/") else "/" + raw, authority


@functools.lru_cache(maxsize=1024)
def _host_and_authority(value: bytes, scheme: bytes) -> tuple[str, str, bytes]:
    """(host, authority, authority as bytes) of a Host value: lower-case, trailing dot and
    default port dropped. Cached: a gateway sees few distinct Host values, and this runs on
    every request."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        address, bracket, port = text[1:].partition("]")
        if not bracket or not address or not set(address) <= _IPV6_CHARACTERS:
            raise BadRequest("the Host header is not a valid host")
        host = f"[{address}]"
    else:
        host, colon, port = text.partition(":")
        host = host[:-1] if host.endswith(".") else host
        if not host or not set(host) <= _HOST_CHARACTERS:
            raise BadRequest("the Host header is not a valid host")
        port = colon + port
    if len(host) > MAX_HOST_LENGTH:
        raise BadRequest(f"the Host header's name is longer than {MAX_HOST_LENGTH} characters")
    if port:
        digits = port[1:]
        if port[0] != ":" or (digits and not (digits.isdigit() and int(digits) <= 65535)):
            raise BadRequest("the Host header's port is not a port")
        if not digits or digits == _DEFAULT_PORTS.get(scheme):
            port = ""
    return host, host + port, (host + port).encode()


def normalise_path(path: str) -> str:
    """`path` with unreserved escapes decoded, slashes merged and dot segments removed; the
    very same object when there was nothing to do (the common case, checked cheaply)."""
    if "." not in path and "%" not in path and "//" not in path and "\\" not in path:
        return path
    if "\\" in path:
        raise BadRequest("a backslash in a path is refused (some backends read it as a /)")
    if "%" in path:
        path = _decode_unreserved(path)
    segments = path.split("/")
    if (";" in path or "%3B" in path) and any(_dot_with_parameters(part) for part in segments):
        raise BadRequest("a dot segment with parameters ('..;') is refused (some backends read ..)")
    kept: list[str] = []
    for segment in segments[1:-1]:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    last = segments[-1]
    if last == "..":
        if kept:
            kept.pop()
        kept.append("")
    elif last == ".":
        kept.append("")
    else:
        kept.append(last)
    return "/" + "/".join(kept)


def _dot_with_parameters(segment: str) -> bool:
    """`..;x` or `.;x`: Tomcat, Jetty and Spring drop a segment's `;` parameters before they
    resolve dot segments, so `/public/..;/secret` is `/secret` to them. Encoded (`..%3Bx`, as
    `_decode_unreserved` leaves it) too: a backend that decodes the path first (Shiro,
    CVE-2020-13933) reads the same."""
    plain = segment.replace("%3B", ";")
    return ";" in plain and plain.partition(";")[0] in (".", "..")


def _decode_unreserved(path: str) -> str:
    """Decode `%XX` where XX is an unreserved character; upper-case the hex of the others."""
    pieces = path.split("%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        code = piece[:2]
        if len(code) != 2 or not set(code) <= _HEX:
            raise BadRequest("a % in the path is not followed by two hex digits")
        character = chr(int(code, 16))
        if character in _UNRESERVED:
            out.append(character + piece[2:])
        else:
            out.append("%" + code.upper() + piece[2:])
    return "".join(out)


def _has_encoded_separator(path: str) -> bool:
    return "%" in path and any(separator in path for separator in _ENCODED_SEPARATORS)
