"""One HTTP/2 stream as the data plane's client side: the request body comes out of it as the
events an HTTP/1.1 `Channel` yields (so `forward.open_upstream` streams it upstream unchanged),
and the response goes into it as HEADERS and DATA frames within the client's flow-control
windows.

Flow control bounds what a client can make the gateway hold: DATA is acknowledged (the window
reopened) only once forwarding has taken it, so one stream holds at most its window
(`INITIAL_WINDOW_SIZE`) of request body. Each response piece goes out before the next is read
from the upstream, so an SSE event reaches the client as soon as the backend sends it.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING

import trio
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError as H2ProtocolError

from oauthproxy.proxy.codec import END, Codec
from oauthproxy.proxy.exchange import AnswerTimer
from oauthproxy.proxy.framing import Headers
from oauthproxy.proxy.http import Channel, ClientGone
from oauthproxy.proxy.http2.encoding import header_list_size
from oauthproxy.proxy.http2.messages import response_fields
from oauthproxy.proxy.responses import Reply

if TYPE_CHECKING:
    from oauthproxy.proxy.http2.connection import Http2Connection

_NO_CODEC = Codec()
"""What a stream's `codec` is: never fed nor asked (every stream shares it, so it stays idle)."""


class _Refused:
    """Around one change to the connection's `h2` machine: what it refuses (a stream the client
    closed, a connection that is closing) ends the stream's task as `ClientGone`. (A class, not
    a generator: entered for every HEADERS and DATA, at a fifth of the cost.)"""

    def __enter__(self) -> None:
        pass

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: TracebackType | None
    ) -> None:
        if isinstance(error, H2ProtocolError):
            raise ClientGone(f"the stream cannot carry this: {error}") from error


_REFUSED = _Refused()


class StreamChannel(Channel):
    """A stream of an `Http2Connection`. The connection feeds it (`deliver`, `finish`, `cut`);
    its own task reads the body (`receive`) and answers (`respond`, `send_body`, `end`)."""

    __slots__ = (
        "_arrived",
        "_unacknowledged",
        "answer_by",
        "bytes_in",
        "bytes_out",
        "connection",
        "declared",
        "ended",
        "late",
        "reset",
        "responded",
        "scope",
        "stream_id",
        "window",
    )

    def __init__(self, connection: Http2Connection, stream_id: int) -> None:
        # Not `Channel.__init__`: a stream parses no HTTP/1.1 (`h2` framed it), so it has no
        # codec of its own (~4 µs of parser set-up per stream); only its event queue is used.
        self.stream = connection.stream
        self.codec = _NO_CODEC
        self.events = deque()
        self.gone = ClientGone
        self.connection = connection
        self.stream_id = stream_id
        self.scope = trio.CancelScope()
        """The stream's task: cancelled when the client resets the stream."""
        self.window = trio.Event()
        """Set when the client opens its window for our DATA (replaced after each wait)."""
        self._arrived = trio.Event()
        self._unacknowledged = 0
        self.ended = False
        """The client's side of the stream has ended (its END is queued or taken)."""
        self.reset = False
        self.responded = False
        """Our side has ended: the whole response went out."""
        self.bytes_in = 0
        self.declared: int | None = None
        """The request's Content-Length, which its DATA must add up to (RFC 9113 §8.1.1)."""
        self.bytes_out = 0
        self.answer_by: AnswerTimer | None = None
        """The request timeout, over `scope`, while an instance answers the stream (its sweep
        arms it: `AnswerTimer`)."""
        self.late: tuple[Reply, bool] | None = None
        """The 504 owed when `answer_by` fired, and whether it answers a HEAD request."""

    # --- fed by the connection ---------------------------------------------------------------

    def deliver(self, data: bytes, flow_controlled: int) -> None:
        if data:
            self.events.append(data)
            self.bytes_in += len(data)
        self._unacknowledged += flow_controlled
        self._arrived.set()

    def finish(self) -> None:
        self.ended = True
        self.events.append(END)
        self._arrived.set()

    def cut(self) -> None:
        """The client reset the stream: its task ends."""
        self.reset = True
        self.scope.cancel()
        self._arrived.set()

    def cancel(self) -> None:
        """The instance answering it ended with it still running: its task ends, and the
        stream with RST_STREAM CANCEL unless its whole response went out."""
        if not (self.reset or self.responded):
            self.connection.reset(self.stream_id, ErrorCodes.CANCEL)
            self.reset = True
        self.scope.cancel()

    def release(self) -> None:
        """The stream is over: what it received and nobody read reopens the connection's
        window (the stream's own is gone with it)."""
        self.events.clear()
        self._acknowledge()

    # --- the request body, as a Channel ------------------------------------------------------

    async def receive(self) -> None:
        """Wait for more of the body. Forwarding reads only when it has taken every event, so
        everything received so far is consumed: the client may send one window more."""
        if self._unacknowledged:
            self._acknowledge()
            self.connection.writer.poke()
        if self.ended or self.reset:
            raise ClientGone("the stream carries no more of the request")
        self._arrived = trio.Event()
        await self._arrived.wait()

    async def send(self, data: bytes) -> None:
        """HTTP/1.1 bytes never go to a stream (no 100 Continue is relayed: see `VERSION`)."""
        raise ClientGone("an HTTP/2 stream takes no HTTP/1.1 bytes")

    def _acknowledge(self) -> None:
        count, self._unacknowledged = self._unacknowledged, 0
        if count:
            self.connection.acknowledge(self.stream_id, count)

    # --- the response ------------------------------------------------------------------------

    async def send_reply(self, reply: Reply, *, close: bool = False, head: bool = False) -> None:
        """A whole response of the gateway's own (`close` means nothing to a stream)."""
        headers = [*reply.headers, (b"content-length", b"%d" % len(reply.body))]
        bodiless = head or not reply.body
        self.respond(reply.status, headers, end=bodiless)
        if not bodiless:
            await self.send_body(reply.body, end=True)
        await self.flush()

    def respond(self, status: int, headers: Headers, *, end: bool) -> None:
        """Queue the response's HEADERS (`flush` sends what is queued)."""
        fields = response_fields(status, headers)
        with _REFUSED:
            self.connection.h2.send_headers(self.stream_id, fields, end_stream=end)
        self.bytes_out += header_list_size(fields)
        self.responded = end

    async def informational(self, status: int) -> None:
        with _REFUSED:
            self.connection.h2.send_headers(self.stream_id, [(b":status", b"%d" % status)])
        await self.flush()

    async def send_body(self, data: bytes, *, end: bool = False) -> None:
        """Queue `data` as DATA frames as far as the client's windows allow (`end`: the last
        one ends the stream); where they do not, send what is queued and wait for the client
        to open them. The caller flushes before it waits for more, so what is queued is at
        most one upstream read."""
        h2 = self.connection.h2
        view = memoryview(data)
        while view:
            try:
                room = min(h2.local_flow_control_window(self.stream_id), h2.max_outbound_frame_size)
            except H2ProtocolError as error:
                raise ClientGone("the stream closed") from error
            if room <= 0:
                await self.flush()
                self.window = trio.Event()
                with trio.move_on_after(self.connection.limits.send_timeout) as waited:
                    await self.window.wait()
                if waited.cancelled_caught:  # a client that stops reading holds nothing long
                    raise ClientGone("the client kept its flow-control window shut")
                continue
            piece, view = bytes(view[:room]), view[room:]
            last = end and not view
            with _REFUSED:
                h2.send_data(self.stream_id, piece, end_stream=last)
            self.bytes_out += len(piece)
        if end:
            self.responded = True

    def end(self) -> None:
        """Queue the end of the response."""
        with _REFUSED:
            self.connection.h2.end_stream(self.stream_id)
        self.responded = True

    async def flush(self) -> None:
        """Send what this stream (and any other) has queued; return once it is written."""
        await self.connection.writer.flush()

    def abort(self) -> None:
        """End the stream without its whole response (the upstream failed mid-body, say)."""
        if not self.responded and not self.reset:
            self.connection.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)
