"""What the gateway writes in HTTP/1.1: message heads from validated header pairs, how a body
is delimited (`Framing`), and whole replies of its own. Pure functions of their inputs; the
codec (`oauthproxy.proxy.codec`) frames through them and tracks what was sent.
"""

from __future__ import annotations

from enum import Enum
from http import HTTPStatus

from oauthproxy.proxy.responses import Reply

Headers = list[tuple[bytes, bytes]]


class Framing(Enum):
    """How a body we send is delimited."""

    NONE = "none"
    """No body at all (a HEAD answer, 1xx, 204, 304, a request without one)."""
    LENGTH = "length"
    """Content-Length: the bytes as they are."""
    CHUNKED = "chunked"
    CLOSE = "close"
    """The bytes as they are, ended by closing the connection (an HTTP/1.0 client)."""

    def frame(self, data: bytes) -> bytes:
        if self is Framing.CHUNKED:
            return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        return data

    @property
    def ending(self) -> bytes:
        return b"0\r\n\r\n" if self is Framing.CHUNKED else b""


class UnsafeHead(ValueError):
    """A header name or value would have broken a message head's lines (never sent)."""


def head_bytes(start_line: bytes, headers: Headers) -> bytes:
    """A message head. Names and values were validated where they came from (llhttp, our own
    constants, a proxy's validated configuration), so no CR or LF can be in them; counting the
    line ends of the result checks that once more, cheaply, before anything goes out."""
    # (joined in C: a loop over the pairs ran ~130 bytecodes per head, two heads per request)
    fields = b"\r\n".join(map(b": ".join, headers))
    data = start_line + fields + b"\r\n\r\n" if headers else start_line + b"\r\n"
    # the head's line ends (CRLF, a lone CR and a lone LF each end one), one per line: a CR or
    # LF anywhere else adds one (one pass in C; counting CRs and LFs apart took two)
    if len(data.splitlines()) != len(headers) + 2:
        raise UnsafeHead("a header would break the message head's lines")
    return data


def request_line(method: bytes, target: bytes) -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\n"


def status_line(status: int, reason: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def reply_bytes(reply: Reply, *, close: bool = False, head: bool = False) -> bytes:
    """A whole response of ours. `head`: it answers a HEAD request (the length, no body)."""
    headers = [*reply.headers, (b"content-length", b"%d" % len(reply.body))]
    if close:
        headers.append((b"connection", b"close"))
    data = head_bytes(status_line(reply.status, _phrase(reply.status)), headers)
    return data if head else data + reply.body
