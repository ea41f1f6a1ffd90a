"""The I/O beside the codec: a `Channel` reads and writes a real socket pair, and maps what goes
wrong to the data plane's errors by side (the parsing itself is `test_http_codec.py`'s)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import trio
import trio.testing

from oauthproxy.proxy.codec import END, Head, State
from oauthproxy.proxy.framing import Framing
from oauthproxy.proxy.http import BadRequest, Channel, ClientGone, UpstreamGone
from oauthproxy.proxy.sockets import LeanSocketStream

Pair = tuple[LeanSocketStream, trio.SocketStream]


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    """(our end, wrapped like the gateway wraps its sockets; the peer's end)."""
    ours, theirs = trio.socket.socketpair()
    async with trio.SocketStream(ours) as a, trio.SocketStream(theirs) as b:
        yield LeanSocketStream(a.socket), b


async def test_a_close_delimited_response_ends_when_the_upstream_closes(pair: Pair) -> None:
    ours, peer = pair
    channel = Channel.of_upstream(ours)
    await peer.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of ")
    await peer.send_all(b"it")
    await peer.send_eof()
    with trio.fail_after(5):
        head = await channel.next_event()
        body = b""
        while (event := await channel.next_event()) is not END:
            assert isinstance(event, bytes)
            body += event
    assert isinstance(head, Head) and head.close_delimited
    assert body == b"all of it" and channel.codec.their_state is State.CLOSED
    with pytest.raises(UpstreamGone, match="no more HTTP"):
        await channel.receive()


@pytest.mark.parametrize(
    ("of", "sent", "error", "message"),
    [
        (Channel.of_client, b"", ClientGone, "the connection closed$"),
        (Channel.of_client, b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nab", ClientGone, "mid"),
        (
            Channel.of_upstream,
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab",
            UpstreamGone,
            "mid",
        ),
        (Channel.of_upstream, b"JUNK\r\n\r\n", UpstreamGone, "malformed"),
    ],
    ids=["client-idle", "client-mid-body", "upstream-cut-short", "upstream-junk"],
)
async def test_an_end_of_file_or_junk_is_the_sides_error(
    pair: Pair,
    of: Callable[[trio.abc.Stream], Channel],
    sent: bytes,
    error: type[Exception],
    message: str,
) -> None:
    ours, peer = pair
    channel = of(ours)
    await peer.send_all(sent)
    await peer.send_eof()
    with trio.fail_after(5), pytest.raises(error, match=message) as raised:
        await _all_events(channel)
    assert not isinstance(raised.value, BadRequest)


async def test_what_a_client_gets_wrong_is_a_bad_request_with_its_status(pair: Pair) -> None:
    ours, peer = pair
    await peer.send_all(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n")
    with trio.fail_after(5), pytest.raises(BadRequest) as refused:
        await Channel.of_client(ours).next_event()
    assert refused.value.status == 400


async def test_a_failed_write_leaves_our_side_broken(pair: Pair) -> None:
    ours, peer = pair
    channel = Channel.of_client(ours)
    await peer.aclose()
    head = channel.codec.send_response(b"HTTP/1.1 200 OK\r\n\r\n", Framing.CLOSE)
    with trio.fail_after(5), pytest.raises(ClientGone):
        await _send_until_it_fails(channel, head + b"x" * 65536)
    assert channel.codec.our_state is State.ERROR and not channel.can_reply


async def _all_events(channel: Channel) -> None:
    while True:
        await channel.next_event()


async def _send_until_it_fails(channel: Channel, data: bytes) -> None:
    for _ in range(100):  # the first writes may land in the socket buffer
        await channel.send(data)


async def test_closing_the_socket_wakes_a_task_waiting_on_it(pair: Pair) -> None:
    """A close while another task waits to read goes through trio, which wakes that task."""
    ours, _ = pair
    outcome: list[str] = []

    async def reader() -> None:
        try:
            await ours.receive_some()
        except trio.ClosedResourceError:
            outcome.append("closed")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            ours.close_socket()
    assert outcome == ["closed"]


async def test_a_read_after_a_wait_gets_what_comes_later_then_the_end_and_counts_it(
    pair: Pair,
) -> None:
    """`receive_awaited` (a TLS handshake's next flight): what the peer sends after the reader
    began to wait, then b"" at its end of file, each byte counted once; a close while it waits
    wakes it, as for `receive_some`."""
    ours, peer = pair
    got: list[bytes] = []

    async def reader() -> None:
        got.append(await ours.receive_awaited())
        got.append(await ours.receive_awaited())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            await peer.send_all(b"flight")
            await trio.testing.wait_all_tasks_blocked()
            await peer.send_eof()
    assert got == [b"flight", b""]
    assert ours.received == len(b"flight")
    outcome: list[str] = []

    async def waiting() -> None:
        try:
            await ours.receive_awaited()
        except trio.ClosedResourceError:
            outcome.append("closed")

    fresh, other = trio.socket.socketpair()
    with other, trio.fail_after(10):
        ours = LeanSocketStream(fresh)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiting)
            await trio.testing.wait_all_tasks_blocked()
            ours.close_socket()
    assert outcome == ["closed"]


async def test_a_descriptor_closed_with_nobody_waiting_serves_its_next_socket() -> None:
    """Closed directly (nobody waits: trio is not told), a descriptor that waited before is
    reused by the next socket, whose waits work as usual."""
    first, first_peer = trio.socket.socketpair()
    ours = LeanSocketStream(first)
    await first_peer.send(b"one")
    assert await ours.receive_some() == b"one"
    async with trio.open_nursery() as nursery:  # one real wait: the descriptor is in epoll
        nursery.start_soon(ours.receive_some)
        await trio.testing.wait_all_tasks_blocked()
        await first_peer.send(b"two")
    fd = first.fileno()
    ours.close_socket()
    first_peer.close()
    second, second_peer = trio.socket.socketpair()
    with second, second_peer:
        assert fd in (second.fileno(), second_peer.fileno())  # the same number again
        for sock, peer in ((second, second_peer), (second_peer, second)):
            stream = LeanSocketStream(sock)
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(stream.receive_some)
                    await trio.testing.wait_all_tasks_blocked()
                    await peer.send(b"three")
