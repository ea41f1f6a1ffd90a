"""The data plane's sans-IO HTTP/1.1 codec: bytes in, events and states out. No sockets."""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass

import pytest

from oauthproxy.proxy.codec import (
    END,
    MAX_HEAD_SIZE,
    MAX_HEADER_FIELDS,
    READABLE,
    TRANSITIONS,
    Closed,
    Codec,
    Head,
    LocalProtocolError,
    ProtocolError,
    State,
    Step,
    advance,
)
from oauthproxy.proxy.framing import Framing, UnsafeHead, head_bytes, reply_bytes
from oauthproxy.proxy.responses import Reply

EOF = b""
"""Fed to a codec: their end of file."""


@dataclass(frozen=True)
class Case:
    """Data fed in order, then the events (heads summarised) and the state they leave."""

    data: tuple[bytes, ...]
    events: list[object]
    state: State
    responses: bool = False


def summary(event: object) -> object:
    """A head as its start line's parts (the rest is checked by the tests that need it)."""
    if isinstance(event, Head):
        return (event.status,) if event.status else (event.method, event.target)
    return event


GET = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

REQUESTS = {
    "get": Case((GET,), [(b"GET", b"/"), END], State.IDLE),
    "get-one-byte-at-a-time": Case(
        tuple(GET[i : i + 1] for i in range(len(GET))), [(b"GET", b"/"), END], State.IDLE
    ),
    "head-in-progress": Case((GET[:20],), [], State.HEAD),
    "body-in-progress": Case(
        (b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab",),
        [(b"POST", b"/p"), b"ab"],
        State.BODY,
    ),
    "pipelined": Case(
        (
            b"POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /two HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nxy\r\n1\r\nz\r\n0\r\n\r\n"
            b"GET /three HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        [
            *[(b"POST", b"/one"), b"abc", END],
            *[(b"POST", b"/two"), b"xy", b"z", END],
            *[(b"GET", b"/three"), END],
        ],
        State.IDLE,
    ),
    "connection-close": Case(
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",),
        [(b"GET", b"/"), END],
        State.DONE,
    ),
    "http-1.0": Case((b"GET / HTTP/1.0\r\n\r\n",), [(b"GET", b"/"), END], State.DONE),
    "upgrade": Case(
        (b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nFRAME",),
        [(b"GET", b"/ws"), END],
        State.SWITCHED,
    ),
    "eof-between-messages": Case((GET, EOF), [(b"GET", b"/"), END, Closed(False)], State.CLOSED),
    "eof-in-head": Case((GET[:20], EOF), [Closed(True)], State.CLOSED),
    "eof-in-body": Case(
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab", EOF),
        [(b"POST", b"/"), b"ab", Closed(True)],
        State.CLOSED,
    ),
}

RESPONSES = {
    "ok": Case((OK,), [(200,), b"ok", END], State.IDLE, True),
    "informational-then-final": Case(
        (b"HTTP/1.1 100 Continue\r\n\r\n", OK), [(100,), END, (200,), b"ok", END], State.IDLE, True
    ),
    "bodiless": Case(
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
        ),
        [(204,), END, (304,), END],
        State.IDLE,
        True,
    ),
    "close-delimited-ends-at-eof": Case(
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of ", b"it", EOF),
        [(200,), b"all of ", b"it", END],
        State.CLOSED,
        True,
    ),
    "cut-short": Case(
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", EOF),
        [(200,), b"short", Closed(True)],
        State.CLOSED,
        True,
    ),
    "upstream-says-close": Case(
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",),
        [(200,), b"ok", END],
        State.DONE,
        True,
    ),
    "switching-protocols": Case(
        (
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\n\r\nWS",
        ),
        [(101,), END],
        State.SWITCHED,
        True,
    ),
}


@pytest.mark.parametrize(
    "case", [*REQUESTS.values(), *RESPONSES.values()], ids=[*REQUESTS, *RESPONSES]
)
def test_bytes_become_events_and_a_state(case: Case) -> None:
    codec = Codec(responses=case.responses)
    for data in case.data:
        codec.receive_data(data)
    assert [summary(event) for event in codec.events] == case.events
    assert codec.their_state is case.state
    assert codec.our_state is State.IDLE


ENDED = {
    **{
        name: case for name, case in {**REQUESTS, **RESPONSES}.items() if case.state not in READABLE
    },
    "malformed": Case((b"GET / HTTP/1.1\r\nHost h\r\n\r\n",), [], State.ERROR),
}


def _codecs() -> int:
    return sum(type(thing) is Codec for thing in gc.get_objects())


@pytest.mark.parametrize("case", ENDED.values(), ids=list(ENDED))
def test_a_codec_whose_peer_is_done_is_freed_without_the_cyclic_collector(case: Case) -> None:
    """llhttp holds the codec's callbacks (a reference cycle); once their side has ended, the
    codec lets go of it, so a connection's codec is freed with it, not by the cyclic collector
    (one cycle per connection was most of what made that collector run under load)."""
    gc.collect()
    gc.disable()
    try:
        before = _codecs()
        codec = Codec(responses=case.responses)
        for data in case.data:
            with contextlib.suppress(ProtocolError):
                codec.receive_data(data)
        assert codec.their_state is case.state
        del codec
        assert _codecs() == before
    finally:
        gc.enable()


def test_a_request_head_has_lower_case_names_and_trimmed_values() -> None:
    codec = Codec()
    codec.receive_data(b"GET /a?b=1 HTTP/1.1\r\nHost: Example.COM\r\nX-Pad:  v \t\r\n\r\n")
    head = codec.next_event()
    assert isinstance(head, Head)
    assert (head.method, head.target, head.version) == (b"GET", b"/a?b=1", b"1.1")
    assert head.headers == [(b"host", b"Example.COM"), (b"x-pad", b"v")]
    assert head.keep_alive and not head.has_body and not head.upgrade
    assert codec.next_event() is END and codec.next_event() is None


def test_what_the_heads_say_about_bodies_and_connections() -> None:
    codec = Codec()
    codec.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunked = codec.next_event()
    assert isinstance(chunked, Head) and chunked.chunked and chunked.has_body
    codec = Codec()
    codec.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    old = codec.next_event()
    assert isinstance(old, Head) and not old.keep_alive  # only HTTP/1.1 connections are reused
    codec = Codec(responses=True)
    codec.receive_data(b"HTTP/1.1 200 OK\r\n\r\n")
    close_delimited = codec.next_event()
    assert isinstance(close_delimited, Head) and close_delimited.close_delimited
    assert not close_delimited.keep_alive


def test_an_upgrade_keeps_the_bytes_after_the_head() -> None:
    codec = Codec()
    codec.receive_data(REQUESTS["upgrade"].data[0])
    head = codec.next_event()
    assert isinstance(head, Head) and head.upgrade
    assert codec.trailing == b"FRAME" and not codec.readable


@pytest.mark.parametrize(
    ("connection_lines", "upgrade"),
    [
        ((b"Connection: Upgrade", b"Connection: keep-alive"), True),
        ((b"Connection: keep-alive", b"Connection: Upgrade"), True),
        ((b"Connection: keep-alive, upgrade",), True),
        ((b"Connection: x-upgraded",), False),  # a token, not a substring
        ((b"Connection: keep-alive",), False),
    ],
)
def test_an_upgrade_is_what_llhttp_switches_for(
    connection_lines: tuple[bytes, ...], upgrade: bool
) -> None:
    """The head says upgrade exactly when llhttp switches after it: `upgrade` in any Connection
    line (RFC 9110 §7.6.1), as a token. A head that said otherwise would forward a request as
    an upgrade that llhttp parses on as HTTP, or the other way round."""
    codec = Codec()
    lines = [b"GET /ws HTTP/1.1", b"Host: h", *connection_lines, b"Upgrade: websocket"]
    codec.receive_data(b"\r\n".join(lines) + b"\r\n\r\n" + (b"FRAME" if upgrade else b""))
    head = codec.next_event()
    assert isinstance(head, Head) and head.upgrade is upgrade
    assert (codec.their_state is State.SWITCHED) is upgrade


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"", b"not a body"),
        (b"", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),  # a second answer: dropped
        (b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ],
)
def test_the_answer_to_head_ends_at_its_head(before: bytes, after: bytes) -> None:
    codec = Codec(responses=True)
    codec.send_request(b"HEAD", b"HEAD / HTTP/1.1\r\n\r\n", Framing.NONE)
    codec.receive_data(before + b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n" + after)
    events = list(codec.events)
    if before:  # the 100 Continue (and its end) come first
        informational, informational_end, *events = events
        assert isinstance(informational, Head) and informational.status == 100
        assert informational_end is END
    head, end = events
    assert isinstance(head, Head) and head.header(b"content-length") == b"1234"
    assert end is END and codec.their_state is State.DONE and not head.keep_alive
    with pytest.raises(LocalProtocolError):  # nothing more is read on it
        codec.receive_data(b"HTTP/1.1 200 OK\r\n\r\n")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\n\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        # llhttp hands over no body after a switching head (tests/test_upgrade_desync.py)
        b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
        b"CONNECT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
        b"PUT /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: 5\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
    ],
    ids=[
        "cl-and-te",
        "two-lengths",
        "te-not-chunked-last",
        "bad-name",
        "bare-lf",
        "obs-fold",
        "junk",
        "connect",
        "connect-with-a-body",
        "upgrade-with-a-length",
        "upgrade-chunked",
    ],
)
def test_what_smuggling_needs_is_refused(request_bytes: bytes) -> None:
    codec = Codec()
    with pytest.raises(ProtocolError) as refused:
        codec.receive_data(request_bytes)
    assert refused.value.status == 400
    assert codec.their_state is State.ERROR and not codec.readable


def _feed(codec: Codec, data: bytes, split: int) -> None:
    for start in range(0, len(data), split):
        codec.receive_data(data[start : start + split])


def _sized_head(size: int) -> bytes:
    start = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: "
    return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"


@pytest.mark.parametrize("split", [1, 3, 1000, 40_000, MAX_HEAD_SIZE - 1, MAX_HEAD_SIZE])
def test_the_head_limit_is_exact_however_the_data_is_split(split: int) -> None:
    fits, too_big = _sized_head(MAX_HEAD_SIZE), _sized_head(MAX_HEAD_SIZE + 1)
    codec = Codec()
    _feed(codec, fits, split)
    assert isinstance(codec.next_event(), Head)
    codec = Codec()
    with pytest.raises(ProtocolError) as refused:
        _feed(codec, too_big, split)
    assert refused.value.status == 431 and codec.their_state is State.ERROR


@pytest.mark.parametrize("split", [1, 7, 100, 4000])
@pytest.mark.parametrize("responses", [False, True])
def test_the_field_limit_is_exact_however_the_data_is_split(split: int, responses: bool) -> None:
    """Fields are counted once per read and at the head's end: a head of the most fields
    passes, one more is a 431 at its end, and a head that never ends is refused in the read
    that takes it past the limit."""
    if responses:  # (Content-Length is one of the fields)
        start = b"HTTP/1.1 200 OK\r\n"
        most = start + b"a:\r\n" * (MAX_HEADER_FIELDS - 1) + b"Content-Length: 0\r\n\r\n"
    else:  # (Host is one)
        start = b"GET / HTTP/1.1\r\nHost: h\r\n"
        most = start + b"a:\r\n" * (MAX_HEADER_FIELDS - 1) + b"\r\n"
    codec = Codec(responses=responses)
    _feed(codec, most, split)
    head = codec.next_event()
    assert isinstance(head, Head) and len(head.headers) == MAX_HEADER_FIELDS
    codec = Codec(responses=responses)
    with pytest.raises(ProtocolError) as refused:
        _feed(codec, most.replace(b"a:\r\n", b"a:\r\na:\r\n", 1), split)
    assert refused.value.status == 431 and codec.their_state is State.ERROR
    endless = start + b"a:\r\n" * (MAX_HEADER_FIELDS + 1)
    codec = Codec(responses=responses)
    with pytest.raises(ProtocolError) as refused:
        _feed(codec, endless + b"a:\r\n" * 4 * split, split)
    assert refused.value.status == 431 and codec.their_state is State.ERROR


@pytest.mark.parametrize("size", [40, 1000, MAX_HEAD_SIZE])
def test_a_head_after_pipelined_requests_is_counted_from_its_own_start(size: int) -> None:
    """A read full of pipelined requests whose last head it cuts: that head was counted from the
    read's start, so a 40-byte head straddling a full 64 KiB read got a 431. It is counted from
    the end of the head before it; a head one byte over the limit is still refused."""
    small = b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n"
    for head, fits in ((_sized_head(size), True), (_sized_head(MAX_HEAD_SIZE + 1), False)):
        cut = 10  # bytes of `head` in the first read, of 64 KiB
        count = (MAX_HEAD_SIZE - cut) // len(small) - 1
        padding = MAX_HEAD_SIZE - cut - (count + 1) * len(small)
        before = small * count + b"GET /" + b"q" * (padding + 1) + small[6:]
        assert len(before) == MAX_HEAD_SIZE - cut
        data = before + head
        codec = Codec()
        codec.receive_data(data[:MAX_HEAD_SIZE])
        events = list(iter(codec.next_event, None))
        assert [type(event) for event in events] == [Head, type(END)] * (count + 1)
        if fits:
            codec.receive_data(data[MAX_HEAD_SIZE:])
            *_, last = iter(codec.next_event, None)
            assert last is END and codec.their_state is State.IDLE
        else:
            with pytest.raises(ProtocolError) as refused:
                codec.receive_data(data[MAX_HEAD_SIZE:])
            assert refused.value.status == 431


def test_trailers_are_dropped_and_never_join_the_head() -> None:
    codec = Codec()
    codec.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    codec.receive_data(b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\nX-Other: o\r\n\r\n")
    head, *rest = codec.events
    assert isinstance(head, Head)
    assert head.headers == [(b"host", b"h"), (b"transfer-encoding", b"chunked")]
    assert rest == [b"abc", END]


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(b"0\r\n" + b"X-Trailer: t\r\n" * 10_000, id="trailer-section"),
        pytest.param(b"3;" + b"e" * 70_000, id="chunk-extension"),
        pytest.param(b"0" * 70_000, id="chunk-size-zeros"),
    ],
)
def test_framing_without_data_is_bounded(framing: bytes) -> None:
    codec = Codec()
    codec.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(ProtocolError) as refused:
        _feed(codec, framing, 4096)
    assert refused.value.status == 431


def test_many_small_chunks_are_not_framing_without_data() -> None:
    codec = Codec()
    codec.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(100_000):  # 600 KB of framing for 100 KB of data
        codec.receive_data(b"1\r\nx\r\n")
    codec.receive_data(b"0\r\n\r\n")
    assert codec.events[-1] is END and codec.their_state is State.IDLE


# --- our side ---------------------------------------------------------------------------------


def test_a_request_we_send_walks_our_state_and_frames_its_body() -> None:
    codec = Codec(responses=True)
    assert codec.send_request(b"POST", b"HEAD-BYTES", Framing.CHUNKED) == b"HEAD-BYTES"
    assert (codec.our_state, codec.reusable) == (State.BODY, False)
    assert codec.send_data(b"hello") == b"5\r\nhello\r\n"
    assert codec.send_data(b"") == b""
    assert codec.send_end() == b"0\r\n\r\n"
    assert codec.our_state is State.IDLE
    codec.receive_data(OK)
    assert not codec.reusable  # its events are not taken yet
    codec.events.clear()
    assert codec.reusable


@pytest.mark.parametrize(
    ("framing", "last", "state"),
    [
        (Framing.LENGTH, False, State.IDLE),
        (Framing.LENGTH, True, State.DONE),
        (Framing.CHUNKED, False, State.IDLE),
        (Framing.CLOSE, False, State.DONE),  # a body ended by closing is the last message
    ],
)
def test_where_a_response_we_send_leaves_our_side(
    framing: Framing, last: bool, state: State
) -> None:
    codec = Codec()
    codec.send_response(b"head", framing)
    codec.send_end(last=last)
    assert codec.our_state is state


def test_replies_switches_and_failures() -> None:
    codec = Codec()
    codec.send_whole(b"reply")
    assert codec.our_state == State.IDLE
    codec.send_whole(b"reply", last=True)
    assert codec.our_state in (State.DONE,)
    with pytest.raises(LocalProtocolError):
        codec.send_whole(b"another")  # nothing goes out after the last message
    with pytest.raises(LocalProtocolError, match="end while idle"):
        Codec().send_end()  # no message was begun
    with pytest.raises(LocalProtocolError, match="head while done"):
        codec.send_response(b"head", Framing.LENGTH)
    switching = Codec()
    switching.send_response(
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n", Framing.NONE, switching=True
    )
    assert switching.our_state is State.SWITCHED
    failed = Codec()
    failed.send_response(b"head", Framing.LENGTH)
    failed.send_failed()
    assert failed.our_state is State.ERROR and not failed.reusable


@pytest.mark.parametrize(
    ("state", "step"),
    [
        (State.IDLE, Step.END),
        (State.BODY, Step.BEGIN),
        (State.BODY, Step.HEAD),
        (State.DONE, Step.BEGIN),
        (State.SWITCHED, Step.BEGIN),
        (State.CLOSED, Step.EOF),
        (State.ERROR, Step.HEAD),
    ],
)
def test_moves_outside_the_table_are_refused(state: State, step: Step) -> None:
    assert (state, step) not in TRANSITIONS
    with pytest.raises(LocalProtocolError):
        advance(state, step)


def test_closed_and_error_are_final_and_any_state_can_fail() -> None:
    for state in State:
        assert advance(state, Step.FAIL) is State.ERROR
    for final in (State.CLOSED, State.ERROR):
        assert {step for (state, step) in TRANSITIONS if state is final} == {Step.FAIL}


# --- writing ----------------------------------------------------------------------------------


def test_framing_and_replies() -> None:
    assert Framing.CHUNKED.frame(b"hello") == b"5\r\nhello\r\n"
    assert Framing.CHUNKED.frame(b"") == b""
    assert Framing.CHUNKED.ending == b"0\r\n\r\n"
    assert Framing.LENGTH.frame(b"hello") == b"hello" and Framing.LENGTH.ending == b""
    reply = Reply(404, [(b"content-type", b"text/plain")], b"nope")
    assert reply_bytes(reply, close=True) == (
        b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n"
        b"connection: close\r\n\r\nnope"
    )
    assert reply_bytes(reply, head=True).endswith(b"content-length: 4\r\n\r\n")


@pytest.mark.parametrize(
    "value",
    # (at a value's ends too, beside the head's own CRLFs: a CR or LF never merges into them)
    [b"a\r\nx-injected: 1", b"a\nb", b"a\rb", b"a\r", b"a\n", b"\na", b"\ra", b"\r\n", b"\n\r"],
)
def test_a_head_with_a_line_break_in_a_value_is_never_written(value: bytes) -> None:
    assert head_bytes(b"GET / HTTP/1.1\r\n", [(b"x-ok", b"1")]).endswith(b"x-ok: 1\r\n\r\n")
    with pytest.raises(UnsafeHead):
        head_bytes(b"GET / HTTP/1.1\r\n", [(b"x-ok", b"1"), (b"x-bad", value)])
    with pytest.raises(UnsafeHead):
        head_bytes(b"GET / HTTP/1.1\r\n", [(b"x-bad", value)])
    with pytest.raises(UnsafeHead):  # in a name
        head_bytes(b"GET / HTTP/1.1\r\n", [(b"x" + value, b"1"), (b"x-ok", b"1")])


@pytest.mark.parametrize(
    ("sent", "reusable"), [(b"12345", True), (b"123", False), (b"123456", False)]
)
def test_a_request_body_that_does_not_carry_its_length_leaves_the_connection_unusable(
    sent: bytes, reusable: bool
) -> None:
    """The peer reads exactly the Content-Length the head announced: a body that falls short
    (an HTTP/2 stream ended by trailers) leaves it waiting for the rest, and the next request
    on that connection would be read as the rest (smuggling); one too long, as a request."""
    codec = Codec(responses=True)
    codec.send_request(b"POST", b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", Framing.LENGTH, 5)
    codec.send_data(sent)
    codec.send_end()
    codec.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    codec.events.clear()  # (the answer, taken)
    assert (codec.our_state is State.ERROR) is not reusable
    assert codec.reusable is reusable
