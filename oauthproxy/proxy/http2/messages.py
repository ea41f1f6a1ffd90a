"""HTTP/2 header blocks to and from the data plane's HTTP/1.1 messages. Pure: no I/O.

A request's pseudo-headers become a `Head` the HTTP/1.1 rules read unchanged: `:authority` is
its one `Host` (a `host` field that names another host is a 400, RFC 9113 §8.3.1), `:path` its
target, and a body without `content-length` goes upstream chunked.

`request_head` is where a request's header block is validated (RFC 9113 §8.2, §8.3; the `h2`
library's own per-character checks are off, as they cost more than the rest of the stream):
lowercase token names, an upper-case token `:method` and a `:path` of visible ASCII (the
request line upstream is one our HTTP/1.1 parser would accept), values without NUL/CR/LF or
surrounding whitespace (nothing can be smuggled into the HTTP/1.1 request upstream), pseudo-headers
first, once each, only the request ones, `:method`/`:scheme`/`:path` present. A
connection-specific field (§8.2.2) makes the request malformed (only `te: trailers` is allowed,
and dropped); responses never carry one either. Each of these is a 400 on that stream
(§8.1.1), the connection goes on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from hpack import NeverIndexedHeaderTuple

from oauthproxy.proxy.codec import MAX_HEADER_FIELDS, Head
from oauthproxy.proxy.framing import Headers
from oauthproxy.proxy.http import BadRequest

VERSION = b"2"
"""A stream's `Head.version`: never b"1.0" (a host is required) nor b"1.1" (no 100 Continue
goes through the HTTP/1.1 path; `connection` answers `expect` itself)."""

CONNECTION_SPECIFIC = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
        b"http2-settings",
    }
)
"""Fields that describe one hop's connection: never translated between HTTP/2 and HTTP/1.1."""

_NEVER_INDEXED = frozenset({b"authorization", b"proxy-authorization", b"set-cookie", b"cookie"})

_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
"""A field name: an HTTP token, lowercase (RFC 9113 §8.2.1, RFC 9110 §5.1)."""
_METHOD = re.compile(rb"[A-Z_-]+")
"""A method: upper-case letters, `-` and `_` (as nginx takes them; every registered method),
so the request line upstream has three parts. Methods are case-sensitive (RFC 9110 §9.1), and
a backend that folds `get` to GET would answer what routes and checks saw as another method;
the HTTP/1.1 front (llhttp) refuses those too."""
_TARGET = re.compile(rb"[\x21-\x7e]+")
"""A request target: visible ASCII, no space (RFC 9112 §3.2), as our HTTP/1.1 parser wants it."""
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|\A[ \t]|[ \t]\Z")
"""What a field value must not hold: RFC 9113 §8.2.1 forbids NUL, CR, LF and surrounding
whitespace; the other control characters (RFC 9110 §5.5) are refused too, as the HTTP/1.1
parser refuses them, so a backend never sees one."""


def _shown(name: bytes) -> str:
    return repr(name.decode("latin-1"))[:80]


def request_head(fields: Iterable[tuple[bytes, bytes]], *, ended: bool) -> Head:
    """The HTTP/1.1 view of a request's header block; `ended`: the block ended the stream (no
    body follows). `BadRequest` for what HTTP/1.1 could not carry or HTTP/2 forbids."""
    pseudo: dict[bytes, bytes] = {}
    headers: Headers = []
    host = b""
    length = b""
    cookies: list[bytes] = []
    regular = False
    for name, value in fields:
        if value and _BAD_VALUE.search(value) is not None:
            raise BadRequest(
                f"the field {_shown(name)} has a control character (NUL, CR, LF, ...)"
                " or surrounding whitespace in its value"
            )
        if name[:1] == b":":
            if name not in _PSEUDO or name in pseudo or regular:
                raise BadRequest(f"the pseudo-header {_shown(name)} is not allowed here")
            pseudo[name] = value
            continue
        regular = True
        if _NAME.fullmatch(name) is None:
            raise BadRequest(f"the field name {_shown(name)} is not a lowercase HTTP token")
        if name in CONNECTION_SPECIFIC:
            if name == b"te" and value == b"trailers":
                continue
            raise BadRequest(f"the connection-specific field {_shown(name)} is not allowed")
        elif name == b"host":
            if host:
                raise BadRequest("a request may carry only one Host header")
            host = value
        elif name == b"cookie":
            cookies.append(value)
        else:
            if name == b"content-length":
                if length:  # a repeat is sent once; differing values (h2 refuses them too) a 400
                    if value != length:
                        raise BadRequest("the request carries differing Content-Length values")
                    continue
                length = value
            headers.append((name, value))
    if len(headers) + len(cookies) + bool(host) > MAX_HEADER_FIELDS:  # (as HTTP/1.1's heads)
        raise BadRequest(f"a request head has more than {MAX_HEADER_FIELDS} fields", 431)
    method, path = pseudo.get(b":method", b""), pseudo.get(b":path", b"")
    if not method or method == b"CONNECT":
        raise BadRequest("CONNECT is not served (nor is a request without :method)")
    if not path:
        raise BadRequest("a request needs :path")
    if _METHOD.fullmatch(method) is None or _TARGET.fullmatch(path) is None:
        # `:method: GET /secret` with `:path: /public` is routed and checked as /public, and
        # an HTTP/1.1 backend would read the request line `GET /secret /public HTTP/1.1`
        raise BadRequest(
            "the :method is not an upper-case token, or the :path has a space or non-ASCII byte"
        )
    if not pseudo.get(b":scheme"):
        raise BadRequest("a request needs :scheme")
    authority = pseudo.get(b":authority", b"")
    if authority and host and authority.lower() != host.lower():
        raise BadRequest("the Host header and :authority name different hosts")
    authority = authority or host
    if not authority:
        raise BadRequest("a request needs :authority (or a Host header)")
    if length and (not length.isdigit() or (ended and length.strip(b"0"))):
        # RFC 9113 §8.1.1: a content-length the DATA frames do not match is malformed. `h2`
        # checks it against DATA, not against a HEADERS frame that ends the stream: the head
        # upstream would announce a body that never follows, and a backend that answers
        # before reading it would take the next request on that connection as the body
        raise BadRequest("the request's Content-Length does not match its body")
    if cookies:  # RFC 9113 §8.2.3: crumbs are one field again for HTTP/1.1
        headers.append((b"cookie", b"; ".join(cookies)))
    headers.append((b"host", authority))
    chunked = not ended and not length
    if chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    # a stream not ended has a body to come, even one that announces 0 bytes: its END is
    # relayed as the body's end while the answer is awaited (waited for before the request
    # went upstream, a stream that never sent it held its slot forever)
    has_body = not ended
    return Head(headers, VERSION, True, method, path, 0, b"", chunked, has_body)


def response_fields(status: int, headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """The header block of a response whose HTTP/1.1 headers are `headers` (already rewritten
    by `client_response_headers`): `:status` first, connection-specific fields dropped, and
    credentials never indexed by HPACK (so no later field on the connection can probe them)."""
    fields: Headers = [(b":status", b"%d" % status)]
    for name, value in headers:
        if name in CONNECTION_SPECIFIC:
            continue
        if name in _NEVER_INDEXED:
            fields.append(NeverIndexedHeaderTuple(name, value))
        else:
            fields.append((name, value))
    return fields
