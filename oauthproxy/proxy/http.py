"""HTTP/1.1 on Trio streams: llhttp (through httptools) parses, we frame and write.

The data plane's hot path. A `Reader` turns one direction of a connection into events: a `Head`
(request or response), body pieces as `bytes` (de-chunked), and `END`. Parsing is strict: llhttp
refuses what request smuggling needs (Content-Length with Transfer-Encoding, duplicate lengths,
bare LF, obs-fold, bad tokens). Writing is ours: heads are joined from header pairs that were
validated on the way in (or are our own), bodies are framed by `Framing`.

Bytes a reader already holds are never read twice, and it reads again only when it has no event
left, so a pipelining client cannot make it buffer more than one read (64 KiB) ahead.

What is not body is bounded by `MAX_HEAD_SIZE`, exactly: a head (every byte up to and including
its blank line, however the reads split it), a chunked body's trailer section, and the bytes of
chunk framing (size lines, extensions) between two pieces of body data. Trailers are read and
dropped: they are never forwarded, and never kept.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus

import httptools
import trio

from oauthproxy.proxy.responses import Reply

READ_SIZE = 64 * 1024
MAX_HEAD_SIZE = 64 * 1024
"""A head that begins and ends within one read is at most a read long: only heads that span
reads are counted (so the two must stay equal, or the count must start at the head's start)."""
_HEAD_END = b"\r\n\r\n"

Headers = list[tuple[bytes, bytes]]


class PeerClosed(Exception):
    """The other side went away or broke the protocol."""


class ClientGone(PeerClosed):
    """The client went away or broke the protocol."""


class BadRequest(ClientGone):
    """The client sent something that is not HTTP/1.1: it gets a 400 (431: a head too large)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.status = status


class UpstreamGone(PeerClosed):
    """The upstream went away or broke the protocol."""


class _End:
    def __repr__(self) -> str:
        return "END"


END = _End()
"""The event that ends a message."""


@dataclass(slots=True, eq=False)
class Head:
    """A request head (`method`, `target`) or a response head (`status`, `reason`)."""

    headers: Headers
    """(lower-case name, value) pairs, in the order received."""
    version: bytes
    keep_alive: bool
    """Whether the sender lets the connection carry another message after this one."""
    method: bytes = b""
    target: bytes = b""
    status: int = 0
    reason: bytes = b""
    chunked: bool = False
    has_body: bool = False
    """A request: it has a body. A response: it may have one (not 1xx/204/304)."""
    upgrade: bool = False
    """A request that asks to switch protocols (`Upgrade`, and `Connection: upgrade`)."""
    close_delimited: bool = False
    """A response whose body ends when the upstream closes (no length, not chunked)."""

    def header(self, name: bytes) -> bytes:
        for key, value in self.headers:
            if key == name:
                return value
        return b""


Event = Head | bytes | _End


class Reader:
    """One direction of an HTTP/1.1 connection, as events (see the module docstring)."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        responses: bool = False,
        gone: type[PeerClosed] = ClientGone,
    ) -> None:
        self.stream = stream
        self.gone = gone
        self._parser: httptools.HttpRequestParser | httptools.HttpResponseParser = (
            httptools.HttpResponseParser(self) if responses else httptools.HttpRequestParser(self)
        )
        self.events: deque[Event] = deque()
        self.upgraded = False
        """The peer switched protocols: what follows is not HTTP (see `trailing`)."""
        self.trailing = b""
        """Bytes after the head that switched protocols."""
        self.in_message = False
        """A message has begun and not yet ended."""
        self.head_only = False
        """A response reader: the next final response answers a HEAD request (no body)."""
        self.spent = False
        """Nothing more can be read as HTTP (end of file, or a body-less HEAD answer)."""
        self._in_head = False
        self._head_bytes = 0
        """Bytes of the head in progress (from the start of the read it began in)."""
        self._head_tail = b""
        """The last bytes of the head in progress, to find its end across reads."""
        self._began = False
        """A message began during the current `feed`."""
        self._framing_bytes = 0
        """Bytes read inside a body since its last data: chunk size lines, extensions."""
        self._trailer_bytes = 0
        self._body_seen = False
        """Body data (or the message's end) came during the current `feed`."""
        self._target = b""
        self._reason = b""
        self._headers: Headers = []
        self._close_delimited = False

    # --- what llhttp calls while parsing ------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self._in_head = True
        self._began = True
        self._head_bytes = 0
        self._framing_bytes = 0
        self._trailer_bytes = 0
        self._target = b""
        self._reason = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            self._headers.append((name.lower(), value.rstrip(b" \t")))
        else:  # a trailer field: counted, never kept
            self._trailer_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        headers = self._headers
        version = parser.get_http_version().encode()
        chunked = False
        length = b""
        connection = b""
        upgrade = False
        for name, value in headers:
            if name == b"transfer-encoding":
                chunked = True  # llhttp refused anything but a final "chunked"
            elif name == b"content-length":
                length = value
            elif name == b"connection":
                connection = value
            elif name == b"upgrade":
                upgrade = True
        keep_alive = parser.should_keep_alive() and version == b"1.1"
        if isinstance(parser, httptools.HttpResponseParser):
            status = parser.get_status_code()
            bodiless = status < 200 or status in (204, 304)
            if self.head_only and status >= 200:
                head = Head(headers, version, False, status=status, reason=self._reason)
                self.events.append(head)
                self.events.append(END)
                self.spent = True  # we stop reading: the connection is not reused
                return
            self._close_delimited = not (bodiless or chunked or length)
            self.events.append(
                Head(
                    headers,
                    version,
                    keep_alive and not self._close_delimited,
                    status=status,
                    reason=self._reason,
                    chunked=chunked,
                    has_body=not bodiless,
                    close_delimited=self._close_delimited,
                )
            )
            return
        self.events.append(
            Head(
                headers,
                version,
                keep_alive,
                method=parser.get_method(),
                target=self._target,
                chunked=chunked,
                has_body=chunked or (length not in (b"", b"0")),
                upgrade=upgrade and b"upgrade" in connection.lower(),
            )
        )

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        if not self.spent:
            self.events.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        self._body_seen = True
        if not self.spent:
            self.events.append(END)

    # --- reading ------------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray) -> None:
        """Parse `data`, queueing the events it completes."""
        continued = self._in_head
        if continued:  # a head that began in an earlier read: count up to its end, exactly
            end = (self._head_tail + data).find(_HEAD_END)
            self._head_bytes += len(data) if end == -1 else end + 4 - len(self._head_tail)
            self._check(self._head_bytes, "the message head")
        in_body = self.in_message and not continued
        self._began = self._body_seen = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgraded = True
            self.trailing = bytes(data[upgrade.args[0] :])
        except httptools.HttpParserError as error:
            detail = f"malformed HTTP: {error}"
            raise (BadRequest(detail) if self.gone is ClientGone else self.gone(detail)) from None
        if self._in_head:
            if self._began:  # counted from the read's start: at most one read too many
                self._head_bytes = len(data)
                self._head_tail = b""
            self._head_tail = bytes((self._head_tail + data)[-3:])
            self._check(self._head_bytes, "the message head")
        elif in_body and self.in_message and not self._body_seen:
            self._framing_bytes += len(data)
            self._check(self._framing_bytes, "chunk framing without data")
        elif self._body_seen:
            self._framing_bytes = 0
        self._check(self._trailer_bytes, "the trailer section")

    def _check(self, count: int, what: str) -> None:
        if count > MAX_HEAD_SIZE:
            detail = f"{what} is larger than {MAX_HEAD_SIZE} bytes"
            raise BadRequest(detail, 431) if self.gone is ClientGone else self.gone(detail)

    async def next_event(self) -> Event:
        events = self.events
        while not events:
            await self.receive()
        return events.popleft()

    async def receive(self) -> None:
        """Read once and parse what arrived (at the end of file, end a close-delimited body)."""
        if self.spent or self.upgraded:
            raise self.gone("the connection carries no more HTTP messages")
        try:
            data = await self.stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            raise self.gone(str(error) or type(error).__name__) from error
        if data:
            self.feed(data)
            return
        self.spent = True
        if self.in_message and self._close_delimited and not self._in_head:
            self.in_message = False
            self.events.append(END)
            return
        raise self.gone("the connection closed" + (" mid-message" if self.in_message else ""))


# --- writing ----------------------------------------------------------------------------------


class UnsafeHead(ValueError):
    """A header name or value would have broken a message head's lines (never sent)."""


def head_bytes(start_line: bytes, headers: Headers) -> bytes:
    """A message head. Names and values were validated where they came from (llhttp, our own
    constants, a proxy's validated configuration), so no CR or LF can be in them; counting the
    line ends of the result checks that once more, cheaply, before anything goes out."""
    parts = [start_line]
    for name, value in headers:
        parts.append(name + b": " + value + b"\r\n")
    parts.append(b"\r\n")
    data = b"".join(parts)
    lines = len(headers) + 2
    if data.count(b"\n") != lines or data.count(b"\r") != lines:
        raise UnsafeHead("a header would break the message head's lines")
    return data


def request_line(method: bytes, target: bytes) -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\n"


def status_line(status: int, reason: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


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


async def write(
    stream: trio.abc.Stream, data: bytes, closed: type[PeerClosed] = ClientGone
) -> None:
    if data:
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            raise closed(str(error) or type(error).__name__) from error


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


async def send_reply(
    stream: trio.abc.Stream, reply: Reply, *, close: bool = False, head: bool = False
) -> None:
    await write(stream, reply_bytes(reply, close=close, head=head))


LINGER_SECONDS = 1.0


async def close_gently(stream: trio.abc.Stream) -> None:
    """Close after a reply: half-close our side, then drain what the client still sends.

    Closing a socket that has unread input makes the kernel send RST, and a client that gets
    the RST before it has read our reply loses the reply. Draining first prevents that.
    (A TLS stream cannot half-close: it says close_notify and closes.)
    """
    if not isinstance(stream, trio.abc.HalfCloseableStream):
        with trio.move_on_after(LINGER_SECONDS):
            await stream.aclose()
        await trio.aclose_forcefully(stream)
        return
    try:
        await stream.send_eof()
        with trio.move_on_after(LINGER_SECONDS):
            while await stream.receive_some(READ_SIZE):
                pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)
