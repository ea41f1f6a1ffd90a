"""HTTP/1.1 on Trio streams: the I/O beside the sans-IO codec (`oauthproxy.proxy.codec`).

A `Channel` is one connection: it reads its stream into its codec and writes what the codec
frames, and it is the one place where what goes wrong becomes the data plane's errors — a
library's socket errors and the peer's end of file become `ClientGone` or `UpstreamGone`
(by side), and what the codec refuses becomes `BadRequest` (a client: it gets a 400 or 431) or
`UpstreamGone` (an upstream). Nothing else in the data plane touches a stream's bytes, apart
from a switched connection's splice and the lingering close.

Bytes a channel already holds are never read twice, and it reads again only when it has no
event left, so a pipelining client cannot make it buffer more than one read (64 KiB) ahead.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from oauthproxy.proxy.codec import (
    READABLE,
    Closed,
    Codec,
    Event,
    Head,
    ProtocolError,
    State,
)
from oauthproxy.proxy.framing import reply_bytes
from oauthproxy.proxy.responses import Reply

READ_SIZE = 64 * 1024

_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


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


class Channel:
    """One HTTP/1.1 connection: its stream and its codec (see the module docstring). Build it
    with `of_client` or `of_upstream`: the side decides how failures are named."""

    __slots__ = ("_send_now", "codec", "events", "gone", "stream")

    def __init__(self, stream: trio.abc.Stream, codec: Codec, gone: type[PeerClosed]) -> None:
        self.stream = stream
        self.codec = codec
        self.events = codec.events
        """The codec's queue of parsed events (the relays pop it directly)."""
        self.gone = gone
        self._send_now: Callable[[bytes], int] | None = getattr(stream, "send_now", None)
        """The stream's write without a wait (`sockets.LeanSocketStream.send_now`), if it has
        one: `send_at_once`."""

    @classmethod
    def of_client(cls, stream: trio.abc.Stream) -> Channel:
        return cls(stream, Codec(), ClientGone)

    @classmethod
    def of_upstream(cls, stream: trio.abc.Stream) -> Channel:
        return cls(stream, Codec(responses=True), UpstreamGone)

    async def next_event(self) -> Event:
        events = self.events
        while not events:
            await self.receive()
        return events.popleft()

    async def receive(self) -> None:
        """Read once and parse what arrived. Their end of file ends a close-delimited body
        (an `END`); anywhere else it raises `gone`, as does reading when no HTTP can follow."""
        codec = self.codec
        if codec.their_state not in READABLE:  # (`codec.readable`, without a call)
            raise self.gone("the connection carries no more HTTP messages")
        try:
            data = await self.stream.receive_some(READ_SIZE)
        except _BROKEN as error:
            raise self.gone(str(error) or type(error).__name__) from error
        try:
            codec.receive_data(data)
        except ProtocolError as error:
            raise self.refused(error) from None
        if not data:
            events = self.events
            last = events[-1] if events else None
            if isinstance(last, Closed):
                events.pop()
                raise self.gone(last.detail)

    def refused(self, error: ProtocolError) -> PeerClosed:
        detail = str(error)
        return BadRequest(detail, error.status) if self.gone is ClientGone else self.gone(detail)

    def unexpected(self, event: Event) -> PeerClosed:
        """What a relay raises for an event that cannot come inside a body."""
        if isinstance(event, Head):
            return self.gone("a new message began inside a body")
        return self.gone(event.detail if isinstance(event, Closed) else f"unexpected {event!r}")

    async def send(self, data: bytes) -> None:
        """Write what the codec framed; a write that fails (or is cancelled) leaves our side in
        `ERROR`: the connection carries nothing more."""
        if data:
            try:
                await self.stream.send_all(data)
            except _BROKEN as error:
                self.codec.send_failed()
                raise self.gone(str(error) or type(error).__name__) from error
            except BaseException:  # cancelled: part of it may have gone out
                self.codec.send_failed()
                raise

    def send_at_once(self, data: bytes) -> bytes:
        """`send` what the stream takes at once, with no coroutine (nearly always all of it: a
        small message into a socket buffer with room), and return the rest (b"": none), which
        the caller then sends with `send`. A stream that cannot write without a wait takes
        nothing here."""
        send_now = self._send_now
        if send_now is None or not data:  # (nothing to write: no system call)
            return data
        try:
            sent = send_now(data)
        except _BROKEN as error:
            self.codec.send_failed()
            raise self.gone(str(error) or type(error).__name__) from error
        return b"" if sent == len(data) else data[sent:]

    async def send_reply(self, reply: Reply, *, close: bool = False, head: bool = False) -> None:
        """A whole response of ours (`head`: it answers a HEAD request)."""
        data = reply_bytes(reply, close=close, head=head)
        await self.send(self.codec.send_whole(data, last=close))

    @property
    def can_reply(self) -> bool:
        """No response of ours is under way (one could go out now)."""
        return self.codec.our_state is State.IDLE


LINGER_SECONDS = 1.0


async def close_gently(stream: trio.abc.Stream) -> None:
    """Close after a reply: half-close our side, then drain what the client still sends.

    Closing a socket that has unread input makes the kernel send RST, and a client that gets
    the RST before it has read our reply loses the reply. Draining first prevents that.
    (A TLS stream cannot half-close: it says close_notify and closes.)
    """
    close_now = getattr(stream, "close_now", None)  # a TLS stream that sends no close_notify
    if close_now is not None and close_now():
        return  # closed: a connection's task ends here, without one more scheduler trip
    if not isinstance(stream, trio.abc.HalfCloseableStream):
        with trio.move_on_after(LINGER_SECONDS) as lingered:
            await stream.aclose()
        if lingered.cancelled_caught:  # else it is closed already
            await trio.aclose_forcefully(stream)
        return
    try:
        await stream.send_eof()
        with trio.move_on_after(LINGER_SECONDS):
            while await stream.receive_some(READ_SIZE):
                pass
    except _BROKEN:
        pass
    finally:
        await trio.aclose_forcefully(stream)
