"""HTTP/1.1 as a sans-IO codec: bytes in, events out; our own messages out as bytes. No I/O.

One `Codec` is one connection as the gateway sees it. What the peer sends is parsed by llhttp
(through httptools) into events — a `Head` (request or response), body pieces as `bytes`
(de-chunked), `END`, and `Closed` at their end of file — and walks `their_state`. What we send
walks `our_state`: `send_request`/`send_response` frame a head, `send_data` a piece of body,
`send_end` the message's end. Both sides move only along `TRANSITIONS` (one table for both), so
"can this connection carry another message" is a question about two states, asked in one place.
The I/O layer (`oauthproxy.proxy.http`) reads and writes the sockets; this module never sees one.

Heads and bodies are framed by `oauthproxy.proxy.framing` (which also writes the gateway's own
replies). Parsing is strict: llhttp refuses what request smuggling needs (Content-Length with
Transfer-Encoding, duplicate lengths, bare LF, obs-fold, bad tokens); a refusal raises
`ProtocolError` (400, or 431 for a head too large) and their side is in `ERROR`. Heads we write
are joined from header pairs validated on the way in (or our own).

What is not body is bounded by `MAX_HEAD_SIZE`: a head (every byte up to and including its blank
line, however the reads split it), a chunked body's trailer section, and the bytes of chunk
framing (size lines, extensions) between two pieces of body data. A head is counted exactly,
except one that begins in a read after another message's body: llhttp does not say where in the
read it began, so it is counted from the end of the last head (or chunked body) in that read,
and may be refused a body's length early, never late. Trailers are read and
dropped: they are never forwarded, and never kept.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import NoReturn

import httptools

from oauthproxy.proxy.framing import Framing, Headers

MAX_HEAD_SIZE = 64 * 1024
"""A head that begins and ends within one read is at most a read long (`http.READ_SIZE`): only
heads that span reads are counted (so the two must stay equal, or the count must start at the
head's start)."""
MAX_HEADER_FIELDS = 256
"""Fields in one head (as Apache's LimitRequestFields, 100, and Node's 2,000, bound them): a
four-byte `a:\r\n` line is ~110 bytes of Python objects, so a head of them just under
MAX_HEAD_SIZE held ~1.85 MiB while it waited for its end."""
_HEAD_END = b"\r\n\r\n"
_RequestParser, _ResponseParser = httptools.HttpRequestParser, httptools.HttpResponseParser


class State(Enum):
    """Where one direction of a connection is. Messages go IDLE → (HEAD →) BODY → IDLE."""

    IDLE = "idle"
    """Between messages: nothing of the next one yet."""

    __hash__ = object.__hash__  # members are singletons: Enum's own hash is Python code
    HEAD = "head"
    """A message's head has begun (only ever theirs: ours goes out whole)."""
    BODY = "body"
    """The head is complete; its body (perhaps none) and its end follow."""
    DONE = "done"
    """The last message this direction carries has ended (`Connection: close`, HTTP/1.0, or
    the answer to a HEAD request: we stop reading after its head)."""
    SWITCHED = "switched"
    """After a message that switches protocols: what follows is not HTTP (`Codec.trailing`)."""
    CLOSED = "closed"
    """Their end of file."""
    ERROR = "error"
    """They broke the protocol, or (ours) a write to them failed."""


class Step(Enum):
    """What moves a state."""

    BEGIN = "begin"
    HEAD = "head"

    __hash__ = object.__hash__
    END = "end"
    END_LAST = "end-last"
    """A message ends, and no other may follow it."""
    SWITCH = "switch"
    EOF = "eof"
    FAIL = "fail"


_S = State
TRANSITIONS: dict[tuple[State, Step], State] = {
    (_S.IDLE, Step.BEGIN): _S.HEAD,
    (_S.IDLE, Step.HEAD): _S.BODY,  # ours: a head goes out whole
    (_S.HEAD, Step.HEAD): _S.BODY,
    (_S.BODY, Step.END): _S.IDLE,
    (_S.BODY, Step.END_LAST): _S.DONE,
    (_S.IDLE, Step.SWITCH): _S.SWITCHED,  # llhttp says so after the message's end
    (_S.DONE, Step.SWITCH): _S.SWITCHED,
    (_S.BODY, Step.SWITCH): _S.SWITCHED,  # ours: a 101 has no body
    **{(state, Step.EOF): _S.CLOSED for state in (_S.IDLE, _S.HEAD, _S.BODY, _S.DONE)},
    **{(state, Step.FAIL): _S.ERROR for state in State},
}
"""Every move either side may make; anything else is a bug of ours (`LocalProtocolError`)."""


class ProtocolError(Exception):
    """They sent something that is not HTTP/1.1 (`status`: the 400 or 431 a client gets)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.status = status


class _HeadAnswered(Exception):
    """Raised through llhttp to stop it after the final answer to a HEAD request: the answer
    has no body, whatever its head says, and llhttp (which does not know the request) would
    take the bytes after the head for one."""


class LocalProtocolError(RuntimeError):
    """We tried a move the transition table does not allow (a bug, never the peer's fault)."""


def advance(state: State, step: Step) -> State:
    """Where `step` takes `state` (`TRANSITIONS`), or `LocalProtocolError`."""
    return TRANSITIONS.get((state, step)) or _refused(state, step)


def _refused(state: State, step: Step) -> NoReturn:
    raise LocalProtocolError(f"{step.value} while {state.value}")


class _Moves(dict[State, State]):
    """`TRANSITIONS` for one step, by state: the hot path's lookups (`moves[state]`, one
    dictionary probe and no call: an enum's class attributes, a tuple key or `.get` each cost
    more than the move itself). A state the step cannot leave is a `LocalProtocolError`."""

    def __init__(self, step: Step) -> None:
        super().__init__((state, after) for (state, by), after in TRANSITIONS.items() if by is step)
        self.step = step

    def __missing__(self, state: State) -> NoReturn:
        _refused(state, self.step)


_IDLE, _HEAD, _BODY, _DONE = State.IDLE, State.HEAD, State.BODY, State.DONE
_SWITCHED, _CLOSED, _ERROR = State.SWITCHED, State.CLOSED, State.ERROR
_ON_BEGIN, _ON_HEAD, _ON_END = _Moves(Step.BEGIN), _Moves(Step.HEAD), _Moves(Step.END)
_ON_END_LAST, _ON_SWITCH = _Moves(Step.END_LAST), _Moves(Step.SWITCH)
READABLE = _READABLE = frozenset({_IDLE, _HEAD, _BODY})
"""The states in which more of their HTTP can come."""


class _End:
    def __repr__(self) -> str:
        return "END"


END = _End()
"""The event that ends a message."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The event of their end of file: cleanly between messages, or cutting one short."""

    mid_message: bool

    @property
    def detail(self) -> str:
        return "the connection closed" + (" mid-message" if self.mid_message else "")


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


Event = Head | bytes | _End | Closed


class _Callbacks:
    """What llhttp calls, by the names httptools looks up once: the codec's methods for its
    direction (a request's head and a response's are parsed apart, without a test of which
    on every message)."""

    def __init__(self, codec: Codec, *, responses: bool) -> None:
        self.on_header = codec.on_header
        self.on_body = codec.on_body
        self.on_message_complete = codec.on_message_complete
        if responses:
            self.on_message_begin = codec.on_response_begin
            self.on_status = codec.on_status
            self.on_headers_complete = codec.on_response_head
        else:
            self.on_message_begin = codec.on_request_begin
            self.on_url = codec.on_url
            self.on_headers_complete = codec.on_request_head


_NO_FRAMING, _CLOSE_FRAMING, _CHUNKED = Framing.NONE, Framing.CLOSE, Framing.CHUNKED
"""(Aliases: an enum's class attributes cost a lookup each.)"""


class Codec:
    """One HTTP/1.1 connection: `responses` — we read responses (an upstream) rather than
    requests (a client). See the module docstring."""

    __slots__ = (
        "_answers_head",
        "_began",
        "_body_seen",
        "_close_delimited",
        "_framing",
        "_framing_bytes",
        "_head_bytes",
        "_head_tail",
        "_headers",
        "_keep_alive",
        "_length_left",
        "_parser",
        "_reason",
        "_target",
        "_trailer_bytes",
        "events",
        "our_state",
        "their_state",
        "trailing",
    )

    def __init__(self, *, responses: bool = False) -> None:
        self._parser: httptools.HttpRequestParser | httptools.HttpResponseParser | None = (
            httptools.HttpResponseParser(_Callbacks(self, responses=True))
            if responses
            else httptools.HttpRequestParser(_Callbacks(self, responses=False))
        )
        """llhttp, while their side is readable. It holds our `on_*` methods, so the codec and
        it are a reference cycle: dropped when their side ends (their last message, end of
        file, an error), the codec is freed with its connection instead of waiting for the
        cyclic collector (one cycle of 12 objects per connection was most of what made the
        collector run under new-connection load)."""
        self.their_state = _IDLE
        self.our_state = _IDLE
        self.events: deque[Event] = deque()
        """Events parsed and not yet taken (`next_event`, or popped by a relay)."""
        self.trailing = b""
        """Bytes after the message that switched protocols."""
        self._framing = _NO_FRAMING
        """How the message we are sending is delimited."""
        self._length_left: int | None = None
        """Of the Content-Length of the request we send, what its body has not carried yet
        (None: not counted)."""
        self._answers_head = False
        """Our request is HEAD: its final response has no body, whatever its head says."""
        self._keep_alive = False
        self._close_delimited = False
        self._began = False
        """A message began during the current `receive_data`."""
        self._body_seen = False
        """Body data (or the message's end) came during the current `receive_data`."""
        self._head_bytes = 0
        """Bytes of the head in progress (from the start of the data it began in)."""
        self._head_tail = b""
        """The last bytes of the head in progress, to find its end across reads."""
        self._framing_bytes = 0
        """Bytes received inside a body since its last data: chunk size lines, extensions."""
        self._trailer_bytes = 0
        self._target = b""
        self._reason = b""
        self._headers: Headers = []

    # --- receiving ---------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next event, or None: more data is needed first."""
        return self.events.popleft() if self.events else None

    @property
    def readable(self) -> bool:
        """More of their HTTP can come (their side is not done, switched, closed or broken)."""
        return self.their_state in _READABLE

    @property
    def in_message(self) -> bool:
        """Their message has begun and not yet ended."""
        return self.their_state is _HEAD or self.their_state is _BODY

    def receive_data(self, data: bytes | bytearray) -> None:
        """Parse what arrived (b"": their end of file), queueing the events it completes."""
        if not data:
            self._receive_eof()
            return
        parser = self._parser
        if parser is None or self.their_state not in _READABLE:
            raise LocalProtocolError(f"data received while {self.their_state.value}")
        continued = self.their_state is _HEAD
        if continued:  # a head that began in earlier data: count up to its end, exactly
            end = (self._head_tail + data).find(_HEAD_END)
            self._head_bytes += len(data) if end == -1 else end + 4 - len(self._head_tail)
            self._check(self._head_bytes, "the message head")
        in_body = self.their_state is _BODY
        self._began = self._body_seen = False
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.their_state = _ON_SWITCH[self.their_state]
            self.trailing = bytes(data[upgrade.args[0] :])
        except httptools.HttpParserError as error:
            self._parser = None
            if isinstance(error.__context__, _HeadAnswered):  # its head ended it: not an error
                return
            self.their_state = _ERROR
            if isinstance(error.__context__, ProtocolError):  # ours, raised in a callback
                raise error.__context__ from None
            raise ProtocolError(f"malformed HTTP: {error}") from None
        state = self.their_state
        if state is _HEAD:
            if self._began:  # counted from the end of the head before it, if this data has one
                ended = data.rfind(_HEAD_END)
                self._head_bytes = len(data) - (ended + 4 if ended >= 0 else 0)
                self._head_tail = b""
            self._head_tail = bytes((self._head_tail + data)[-3:])
            self._check(self._head_bytes, "the message head")
            if len(self._headers) > MAX_HEADER_FIELDS:
                self._too_many_fields()
        elif in_body and state is _BODY and not self._body_seen:
            self._framing_bytes += len(data)
            self._check(self._framing_bytes, "chunk framing without data")
        elif self._body_seen:
            self._framing_bytes = 0
        if state not in _READABLE:  # their last message ended, or they switched protocols
            self._parser = None
        if self._trailer_bytes > MAX_HEAD_SIZE:  # (`_check` without a call: every read)
            self._check(self._trailer_bytes, "the trailer section")

    def _receive_eof(self) -> None:
        self._parser = None
        state = self.their_state
        if state is _BODY and self._close_delimited:
            self.events.append(END)
            self.their_state = _CLOSED
            return
        if state in _READABLE:
            self.events.append(Closed(mid_message=state is not _IDLE))
            self.their_state = _CLOSED

    def _too_many_fields(self) -> NoReturn:
        """A head's fields are counted once per read (and at its end), not as each comes: a
        read holds at most `READ_SIZE` bytes of them, so the count stays bounded between two
        checks, and the common head costs no check per field."""
        self.their_state = _ERROR
        raise ProtocolError(f"a message head has more than {MAX_HEADER_FIELDS} fields", 431)

    def _check(self, count: int, what: str) -> None:
        if count > MAX_HEAD_SIZE:
            self.their_state = _ERROR
            raise ProtocolError(f"{what} is larger than {MAX_HEAD_SIZE} bytes", 431)

    # --- what llhttp calls while parsing -------------------------------------------------------

    def on_request_begin(self) -> None:
        self.their_state = _ON_BEGIN[self.their_state]
        self._began = True
        self._head_bytes = self._framing_bytes = self._trailer_bytes = 0
        self._target = b""
        self._headers = []

    def on_response_begin(self) -> None:
        self.their_state = _ON_BEGIN[self.their_state]
        self._began = True
        self._head_bytes = self._framing_bytes = self._trailer_bytes = 0
        self._reason = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.their_state is _HEAD:  # (counted per read and at the end: `_too_many_fields`)
            self._headers.append((name.lower(), value.rstrip(b" \t")))
        else:  # a trailer field: counted, never kept
            self._trailer_bytes += len(name) + len(value) + 4

    def on_request_head(self) -> None:
        headers = self._headers
        if len(headers) > MAX_HEADER_FIELDS:  # (raised through llhttp: `receive_data`)
            self._too_many_fields()
        self.their_state = _ON_HEAD[self.their_state]
        parser = self._parser
        assert isinstance(parser, _RequestParser)  # (llhttp calls this from its `feed_data`)
        version = parser.get_http_version().encode()
        last = dict(headers)  # each name's last value (built in C: no loop over the headers)
        # llhttp refused any Transfer-Encoding but a final "chunked" (and `view_of` refuses
        # any other coding before it)
        chunked = b"transfer-encoding" in last
        length = last.get(b"content-length", b"")
        keep_alive = self._keep_alive = parser.should_keep_alive()  # llhttp's: it parses on
        # llhttp switches after this head when an Upgrade field comes with `upgrade` in any
        # Connection line (or for CONNECT); only a WebSocket may (tests/test_upgrade_smuggling)
        # llhttp hands over no body after a switching head (a CONNECT, or an Upgrade): a body
        # one declared would never go upstream, and the upstream connection, waiting for it,
        # would take the next request's bytes for it (smuggling past every check)
        switches = parser.should_upgrade()
        method = parser.get_method()
        if method == b"CONNECT":
            raise ProtocolError("CONNECT is not served: the gateway is no tunnel")
        has_body = chunked or length not in (b"", b"0")
        if switches and has_body:
            raise ProtocolError("a request that asks to switch protocols (Upgrade) has no body")
        upgrade = switches and last.get(b"upgrade", b"").lower() == b"websocket"
        # (positional: half the cost of keywords, on every request) headers, version,
        # keep_alive, method, target, status, reason, chunked, has_body, upgrade
        self.events.append(
            Head(
                headers,
                version,
                keep_alive and version == b"1.1",
                method,
                self._target,
                0,
                b"",
                chunked,
                has_body,
                upgrade,
            )
        )

    def on_response_head(self) -> None:
        # (its first lines are `on_request_head`'s: a helper shared by both would cost a call
        # per head, two per request)
        headers = self._headers
        if len(headers) > MAX_HEADER_FIELDS:  # (raised through llhttp: `receive_data`)
            self._too_many_fields()
        self.their_state = _ON_HEAD[self.their_state]
        parser = self._parser
        assert isinstance(parser, _ResponseParser)  # (llhttp calls this from its `feed_data`)
        version = parser.get_http_version().encode()
        last = dict(headers)  # each name's last value (built in C: no loop over the headers)
        coding = last.get(b"transfer-encoding")
        chunked = coding is not None
        length = last.get(b"content-length", b"")
        status = parser.get_status_code()
        bodiless = status < 200 or status in (204, 304)
        if self._answers_head and status >= 200:
            self.events.append(Head(headers, version, False, status=status, reason=self._reason))
            self.events.append(END)
            self.their_state = advance(self.their_state, Step.END_LAST)
            raise _HeadAnswered  # llhttp would take the bytes after it for a body
        if chunked and not bodiless and not _ends_chunked(coding):
            # read to the close by llhttp (RFC 9112 §6.3); a coding we cannot undo, and
            # nothing to say where its body ends on a kept-alive client connection
            raise ProtocolError(f"the response's transfer coding is {coding!r}, not chunked")
        close_delimited = self._close_delimited = not (bodiless or chunked or length)
        keep_alive = self._keep_alive = (
            parser.should_keep_alive() and version == b"1.1" and not close_delimited
        )
        # (positional, as above) headers, version, keep_alive, method, target, status, reason,
        # chunked, has_body, upgrade, close_delimited
        self.events.append(
            Head(
                headers,
                version,
                keep_alive,
                b"",
                b"",
                status,
                self._reason,
                chunked,
                not bodiless,
                False,
                close_delimited,
            )
        )

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        self.events.append(body)

    def on_message_complete(self) -> None:
        self._body_seen = True
        self.their_state = (_ON_END if self._keep_alive else _ON_END_LAST)[self.their_state]
        self.events.append(END)

    # --- sending -----------------------------------------------------------------------------

    def send_request(
        self, method: bytes, head: bytes, framing: Framing, length: int | None = None
    ) -> bytes:
        """Our request's head (`head_bytes`), its body to follow framed by `framing`; `length`:
        the Content-Length the head announces, which the body must carry exactly."""
        self._answers_head = method == b"HEAD"
        self.our_state = _ON_HEAD[self.our_state]
        self._framing = framing
        self._length_left = length
        return head

    def send_response(self, head: bytes, framing: Framing, *, switching: bool = False) -> bytes:
        """Our response's head; `switching`: a 101, after which the connection is not HTTP."""
        if switching:
            self.our_state = advance(advance(self.our_state, Step.HEAD), Step.SWITCH)
            return head
        self.our_state = _ON_HEAD[self.our_state]
        self._framing = framing
        return head

    def send_data(self, data: bytes) -> bytes:
        if self._framing is _CHUNKED:
            return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        if self._length_left is not None:
            self._length_left -= len(data)
        return data

    def send_end(self, *, last: bool = False) -> bytes:
        """The end of our message; `last`: we said `Connection: close` (or end by closing). A
        request whose body did not carry the length its head announced leaves the connection
        unusable: the peer still waits for the rest, and would take the next request for it."""
        framing = self._framing
        if self._length_left:  # (None or 0: nothing counted, or all of it)
            self._length_left = None
            self.our_state = _ERROR
            return b""
        last = last or framing is _CLOSE_FRAMING
        self.our_state = (_ON_END_LAST if last else _ON_END)[self.our_state]
        return b"0\r\n\r\n" if framing is _CHUNKED else b""

    def send_whole(self, message: bytes, *, last: bool = False) -> bytes:
        """A complete message of ours at once (a reply of the gateway's own)."""
        self.our_state = advance(advance(self.our_state, Step.HEAD), _end(last))
        return message

    def send_failed(self) -> None:
        """A write to them failed: nothing more goes out on this connection."""
        self.our_state = _ERROR

    @property
    def reusable(self) -> bool:
        """Both sides are between messages and nothing unread is queued: another message
        may go out and its answer come back on this connection."""
        return self.their_state is _IDLE and self.our_state is _IDLE and not self.events


def _ends_chunked(coding: bytes | None) -> bool:
    """A Transfer-Encoding value whose last coding is `chunked`."""
    return coding is not None and coding.rpartition(b",")[2].strip().lower() == b"chunked"


def _end(last: bool) -> Step:
    return Step.END_LAST if last else Step.END
