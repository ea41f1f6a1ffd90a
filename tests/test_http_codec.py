"""The data plane's HTTP/1.1 reader and writer, over a real socket pair (no gateway needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from oauthproxy.proxy.http import (
    END,
    MAX_HEAD_SIZE,
    BadRequest,
    Framing,
    Head,
    Reader,
    UnsafeHead,
    UpstreamGone,
    head_bytes,
    reply_bytes,
)
from oauthproxy.proxy.responses import Reply
from oauthproxy.proxy.sockets import LeanSocketStream


@pytest.fixture
async def pair() -> AsyncIterator[tuple[trio.abc.HalfCloseableStream, trio.SocketStream]]:
    """(our end, wrapped like the gateway wraps its sockets; the peer's end)."""
    ours, theirs = trio.socket.socketpair()
    async with trio.SocketStream(ours) as a, trio.SocketStream(theirs) as b:
        yield LeanSocketStream(a), b


async def events_of(reader: Reader, count: int) -> list[object]:
    with trio.fail_after(5):
        return [await reader.next_event() for _ in range(count)]


async def test_a_request_head_has_lower_case_names_and_trimmed_values(
    pair: tuple[trio.abc.HalfCloseableStream, trio.SocketStream],
) -> None:
    ours, peer = pair
    await peer.send_all(b"GET /a?b=1 HTTP/1.1\r\nHost: Example.COM\r\nX-Pad:  v \t\r\n\r\n")
    head, end = await events_of(Reader(ours), 2)
    assert isinstance(head, Head)
    assert (head.method, head.target, head.version) == (b"GET", b"/a?b=1", b"1.1")
    assert head.headers == [(b"host", b"Example.COM"), (b"x-pad", b"v")]
    assert head.keep_alive and not head.has_body
    assert end is END


async def test_pipelined_requests_come_out_in_order_with_their_bodies(
    pair: tuple[trio.abc.HalfCloseableStream, trio.SocketStream],
) -> None:
    ours, peer = pair
    await peer.send_all(
        b"POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /two HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nxy\r\n1\r\nz\r\n0\r\n\r\n"
        b"GET /three HTTP/1.0\r\n\r\n"
    )
    events = await events_of(Reader(ours), 9)
    one, body_one, end_one, two, *chunks, end_two, three, end_three = events
    assert isinstance(one, Head) and one.target == b"/one" and one.has_body
    assert body_one == b"abc" and end_one is END
    assert isinstance(two, Head) and two.chunked and two.has_body
    assert b"".join(chunks) == b"xyz"  # type: ignore[arg-type]
    assert end_two is END
    assert isinstance(three, Head) and three.version == b"1.0" and not three.keep_alive
    assert end_three is END


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
    ],
    ids=[
        "cl-and-te",
        "two-lengths",
        "te-not-chunked-last",
        "bad-name",
        "bare-lf",
        "obs-fold",
        "junk",
    ],
)
async def test_what_smuggling_needs_is_refused(
    pair: tuple[trio.abc.HalfCloseableStream, trio.SocketStream], request_bytes: bytes
) -> None:
    ours, peer = pair
    await peer.send_all(request_bytes)
    with pytest.raises(BadRequest) as refused:
        await events_of(Reader(ours), 1)
    assert refused.value.status == 400


async def test_a_head_larger_than_the_limit_is_a_431(
    pair: tuple[trio.abc.HalfCloseableStream, trio.SocketStream],
) -> None:
    ours, peer = pair
    reader = Reader(ours)
    async with trio.open_nursery() as nursery:
        filler = b"X-Filler: " + b"f" * 1000 + b"\r\n"
        head = b"GET / HTTP/1.1\r\nHost: h\r\n" + filler * (2 * MAX_HEAD_SIZE // len(filler))
        nursery.start_soon(peer.send_all, head)
        with pytest.raises(BadRequest) as refused:
            await events_of(reader, 1)
        assert refused.value.status == 431
        nursery.cancel_scope.cancel()


async def test_a_close_delimited_response_ends_when_the_upstream_closes(
    pair: tuple[trio.abc.HalfCloseableStream, trio.SocketStream],
) -> None:
    ours, peer = pair
    reader = Reader(ours, responses=True, gone=UpstreamGone)
    await peer.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of ")
    await peer.send_all(b"it")
    await peer.send_eof()
    head = await reader.next_event()
    assert isinstance(head, Head) and head.close_delimited and not head.keep_alive
    body = b""
    with trio.fail_after(5):
        while (event := await reader.next_event()) is not END:
            assert isinstance(event, bytes)
            body += event
    assert body == b"all of it" and reader.spent


async def test_a_response_cut_short_is_upstream_gone(
    pair: tuple[trio.abc.HalfCloseableStream, trio.SocketStream],
) -> None:
    ours, peer = pair
    reader = Reader(ours, responses=True, gone=UpstreamGone)
    await peer.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    await peer.send_eof()
    with pytest.raises(UpstreamGone):
        await events_of(reader, 4)


async def test_informational_bodiless_and_head_answers(
    pair: tuple[trio.abc.HalfCloseableStream, trio.SocketStream],
) -> None:
    ours, peer = pair
    reader = Reader(ours, responses=True, gone=UpstreamGone)
    await peer.send_all(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"
    )
    informational, end1, no_content, end2, not_modified, end3 = await events_of(reader, 6)
    assert isinstance(informational, Head) and informational.status == 100
    assert isinstance(no_content, Head) and not no_content.has_body and no_content.keep_alive
    assert isinstance(not_modified, Head) and not not_modified.has_body
    assert (end1, end2, end3) == (END, END, END)
    reader.head_only = True
    await peer.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    head, end = await events_of(reader, 2)
    assert isinstance(head, Head) and head.header(b"content-length") == b"1234"
    assert end is END and reader.spent


async def test_an_upgrade_keeps_the_bytes_after_the_head(
    pair: tuple[trio.abc.HalfCloseableStream, trio.SocketStream],
) -> None:
    ours, peer = pair
    reader = Reader(ours)
    await peer.send_all(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nFRAME"
    )
    head, end = await events_of(reader, 2)
    assert isinstance(head, Head) and end is END
    assert reader.upgraded and reader.trailing == b"FRAME"


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


@pytest.mark.parametrize("value", [b"a\r\nx-injected: 1", b"a\nb", b"a\rb"])
def test_a_head_with_a_line_break_in_a_value_is_never_written(value: bytes) -> None:
    assert head_bytes(b"GET / HTTP/1.1\r\n", [(b"x-ok", b"1")]).endswith(b"x-ok: 1\r\n\r\n")
    with pytest.raises(UnsafeHead):
        head_bytes(b"GET / HTTP/1.1\r\n", [(b"x-ok", b"1"), (b"x-bad", value)])


def _feed(reader: Reader, data: bytes, split: int) -> None:
    for start in range(0, len(data), split):
        reader.feed(data[start : start + split])


def _sized_head(size: int) -> bytes:
    start = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: "
    return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"


@pytest.mark.parametrize("split", [1, 3, 1000, 40_000, MAX_HEAD_SIZE - 1, MAX_HEAD_SIZE])
def test_the_head_limit_is_exact_however_the_reads_split_it(split: int) -> None:
    fits, too_big = _sized_head(MAX_HEAD_SIZE), _sized_head(MAX_HEAD_SIZE + 1)
    reader = Reader(None)  # type: ignore[arg-type]  # fed directly: no stream is read
    _feed(reader, fits, split)
    assert isinstance(reader.events.popleft(), Head)
    reader = Reader(None)  # type: ignore[arg-type]
    with pytest.raises(BadRequest) as refused:
        _feed(reader, too_big, split)
    assert refused.value.status == 431


def test_trailers_are_dropped_and_never_join_the_head() -> None:
    reader = Reader(None)  # type: ignore[arg-type]
    reader.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    reader.feed(b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\nX-Other: o\r\n\r\n")
    head, *rest = reader.events
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
    reader = Reader(None)  # type: ignore[arg-type]
    reader.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(BadRequest) as refused:
        _feed(reader, framing, 4096)
    assert refused.value.status == 431


def test_many_small_chunks_are_not_framing_without_data() -> None:
    reader = Reader(None)  # type: ignore[arg-type]
    reader.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(100_000):  # 600 KB of framing for 100 KB of data
        reader.feed(b"1\r\nx\r\n")
    reader.feed(b"0\r\n\r\n")
    assert reader.events[-1] is END
