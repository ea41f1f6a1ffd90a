"""One HTTP/2 connection from a client (ALPN `h2`): the `h2` state machine, one task that
reads, one that writes, and a task per stream, all in the connection's own nursery.

- **Reading** feeds the `h2` machine and hands each event to its stream; a new stream starts a
  task (`requests.serve_stream`) that routes, checks and forwards it as HTTP/1.1 does.
- **Writing** is one task (`Writer`): streams change the machine and wait until what they
  queued is on the wire, so a client that stops reading stops every stream, and what waits in
  memory is bounded by one upstream read per stream. A cancelled stream never cuts a write in half.
- **Limits** (`Http2Limits`) are sent as SETTINGS and enforced by `h2`; what `h2` does not
  bound (resets, SETTINGS/PING/empty DATA/PRIORITY/WINDOW_UPDATE floods) `floods` counts, and
  a connection over a budget gets GOAWAY `ENHANCE_YOUR_CALM` and is closed. Each running
  stream counts as a connection of its client (`PROXY_MAX_CONNECTIONS_PER_IP`, as nginx's
  `limit_conn` counts streams); over the cap a new stream is refused (`REFUSED_STREAM`).
- **Ending**: when the gateway shuts down (or after `idle_timeout` without a stream) the
  connection sends GOAWAY naming the last stream it took; streams up to it finish, later ones
  are refused (`REFUSED_STREAM`, which clients retry elsewhere), and the connection closes once
  none is left. The gateway's grace period cancels whatever is still running.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, cast

import trio
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingReceived,
    PriorityUpdated,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.settings import Settings
from hyperframe.frame import GoAwayFrame

from oauthproxy.proxy.framing import Headers
from oauthproxy.proxy.headers import Client
from oauthproxy.proxy.http import READ_SIZE, ClientGone, close_gently
from oauthproxy.proxy.http2.encoding import BoundedFrameBuffer, RequestDecoder, ResponseEncoder
from oauthproxy.proxy.http2.floods import Flood, FloodGuard
from oauthproxy.proxy.http2.limits import Http2Limits
from oauthproxy.proxy.http2.requests import serve_stream
from oauthproxy.proxy.http2.stream import StreamChannel
from oauthproxy.proxy.http2.writer import Writer
from oauthproxy.proxy.limits import Release

if TYPE_CHECKING:
    from oauthproxy.proxy.dispatcher import Front

_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
FLUSH_SECONDS = 1.0
UNREAD_ANSWERS = 256 * 1024
"""Bytes of answers to a client's own frames (its SETTINGS and PINGs acknowledged, `h2`'s
RST_STREAM for a frame on a closed stream, ...) that may wait behind a write the client does
not take: tens of bytes per frame, and the frames a client may send for nothing are budgeted
(`floods`); a client that sends such frames and reads nothing made the gateway queue 13 MB
from 9 MB of empty DATA frames on a reset stream."""
"""How long the last frames (a GOAWAY) may take to go out, and the client to close after
them, before the connection closes."""
DEFAULT_WINDOW = 65_535
"""RFC 9113's initial window: where the connection's own window starts."""


def _uncounted() -> None:
    """A trusted proxy's streams are not counted (it speaks for many clients)."""


class _H2Connection(H2Connection):
    MAX_CLOSED_STREAMS = 1024
    """How many closed streams `h2` remembers (to tell a late frame on one from an error): its
    default, 65,536 (~6 MiB per connection), let a connection grow with every stream it served,
    and one client holds up to 256 connections."""


_CONFIGURATION = H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)
"""`h2` frames, decodes (HPACK, within `max_header_list_size`) and keeps the stream states; it
does not validate nor rewrite header blocks, which cost more than the rest of a stream:
`messages.request_head` validates each request's block in one pass (RFC 9113 §8.2, §8.3) and
joins cookie crumbs, and `response_fields` builds responses from heads our HTTP/1.1 codec parsed
(names lowercased, values trimmed), drops connection-specific fields and marks the fields HPACK
must never index. Trailers are not forwarded, so they are not validated either."""


class Http2Connection:
    def __init__(self, stream: trio.abc.Stream, client: Client, front: Front, limits: Http2Limits):
        self.stream = stream
        self.limits = limits
        self._client = client
        self._front = front
        self.h2 = _H2Connection(_CONFIGURATION)
        self.h2.encoder = ResponseEncoder()
        self.h2.decoder = RequestDecoder.like(self.h2.decoder)
        self.h2.incoming_buffer = BoundedFrameBuffer(limits.max_header_list_size)
        self.h2.local_settings = Settings(client=False, initial_values=limits.settings())
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(limits.connection_window - DEFAULT_WINDOW)
        self.writer = Writer(self.h2, stream)
        self._streams: dict[int, StreamChannel] = {}
        self._floods = FloodGuard()
        self._done = trio.Event()
        """Set when the connection is to close (after its last frames are flushed)."""
        self._read_ended = trio.Event()
        self._closing = False
        """GOAWAY went either way: no stream starts any more; it closes when none is left."""
        self._last_stream: int | None = None
        """After our graceful GOAWAY: the last stream we take."""
        self._quiet_since = trio.current_time()
        self._became_quiet = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._unread = 0
        """Bytes answering the client's frames queued since the writer last finished a write."""
        self._writes_seen = 0

    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self.writer.run, self._done)
                nursery.start_soon(self._read)
                nursery.start_soon(self._close_on_shutdown)
                nursery.start_soon(self._close_when_idle)
                self.writer.poke()  # our SETTINGS
                await self._done.wait()
                with trio.move_on_after(FLUSH_SECONDS):
                    with contextlib.suppress(ClientGone):
                        await self.writer.flush()
                    await self._read_ended.wait()  # the client closes once it has our GOAWAY
                nursery.cancel_scope.cancel()
        finally:
            await close_gently(self.stream)

    # --- what streams call -------------------------------------------------------------------

    def acknowledge(self, stream_id: int, count: int) -> None:
        """`count` bytes of a stream's DATA were consumed: the client may send as many more."""
        with contextlib.suppress(H2ProtocolError):
            self.h2.acknowledge_received_data(count, stream_id)

    def reset(self, stream_id: int, code: ErrorCodes) -> None:
        with contextlib.suppress(H2ProtocolError):
            self.h2.reset_stream(stream_id, code)
        self.writer.poke()

    # --- reading -----------------------------------------------------------------------------

    async def _read(self) -> None:
        """Feed the `h2` machine until the client closes. Once the connection is closing, what
        still arrives is read and dropped: closing a socket with unread input resets it, and
        the client would lose our last frames (the GOAWAY that says why)."""
        try:
            while True:
                try:
                    data = await self.stream.receive_some(READ_SIZE)
                except _BROKEN:
                    return
                if not data:
                    return
                if self._done.is_set():
                    continue
                self.writer.poke_if_queued()  # the streams' output: not an answer to this read
                try:
                    events = self.h2.receive_data(data)
                except H2ProtocolError:  # h2 has queued its GOAWAY (PROTOCOL_ERROR and friends)
                    self._done.set()
                    continue
                for event in events:
                    self._on(event)
                    if self._done.is_set():
                        break
                # Acknowledgements go out with the writer's next write; the reader does not wait
                # for it, so a client that writes before it reads cannot stall both ways. What
                # a client can make us queue without asking is bounded by `floods`, and what
                # it makes us answer (`h2` answers a frame on a closed stream with RST_STREAM,
                # and tells us nothing) by `UNREAD_ANSWERS`.
                self._answered(self.writer.poke_if_queued())
        finally:
            self._read_ended.set()
            self._done.set()

    def _on(self, event: Event) -> None:
        if isinstance(event, DataReceived):
            self._data(event)
        elif isinstance(event, RequestReceived):
            self._open(event)
        elif isinstance(event, StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is None:
                pass
            elif stream.declared not in (None, stream.bytes_in) and not stream.ended:
                # malformed (RFC 9113 §8.1.1): `h2` compares the DATA with the content-length
                # only when DATA ends the stream, not trailers; the head upstream announced a
                # body that never came, and a backend answering before reading it would take
                # the next request on that connection for the rest (smuggling past every check).
                # (A HEADERS frame that ends the stream is refused with a 400 by `request_head`.)
                assert event.stream_id is not None
                self.reset(event.stream_id, ErrorCodes.PROTOCOL_ERROR)
                stream.cut()
            else:
                stream.finish()
        elif isinstance(event, StreamReset):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.cut()
            # the client's RST_STREAM, or `h2`'s own for a frame the client should not have
            # sent (DATA on a stream it had ended: "MadeYouReset", CVE-2025-8671): either way
            # a running stream ends at the client's will, and its slot is free for the next
            if event.remote_reset or stream is not None:
                self._count(Flood.RESETS)
        elif isinstance(event, WindowUpdated):
            self._count(Flood.WINDOW_UPDATES)
            self._open_windows(event.stream_id)
        elif isinstance(event, RemoteSettingsChanged):
            self._count(Flood.SETTINGS)
            self._open_windows(0)  # the initial window may have grown
        elif isinstance(event, PingReceived):
            self._count(Flood.PINGS)
        elif isinstance(event, PriorityUpdated):
            self._count(Flood.PRIORITY)
        elif isinstance(event, ConnectionTerminated):
            self._closing = True
            if not self._streams:
                self._done.set()

    def _open(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        assert self._nursery is not None
        if self._closing or (self._last_stream is not None and stream_id > self._last_stream):
            self.reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        # Each running stream counts as a connection of its client (as nginx's limit_conn does):
        # one connection's 100 streams would otherwise hold 100 upstream connections, and the
        # per-IP cap would bound nothing
        release = _uncounted if self._client.trusted else self._front.limit.admit(self._client.ip)
        if release is None:
            self.reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        stream = StreamChannel(self, stream_id)
        bodiless = event.stream_ended is not None
        if bodiless:
            stream.finish()
        self._streams[stream_id] = stream
        fields = cast(Headers, event.headers or [])
        length = next((value for name, value in fields if name == b"content-length"), b"")
        if length.isdigit():  # (any other value: the stream's task refuses the head)
            stream.declared = int(length)
        self._nursery.start_soon(self._serve_stream, stream, fields, bodiless, release)

    def _data(self, event: DataReceived) -> None:
        stream_id, data = event.stream_id, event.data or b""
        assert stream_id is not None
        flow_controlled = event.flow_controlled_length or 0
        if not data and event.stream_ended is None:
            self._count(Flood.EMPTY_DATA)
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.deliver(data, flow_controlled)
        elif flow_controlled:  # a stream already answered: its DATA still reopens the window
            self.acknowledge(stream_id, flow_controlled)

    def _open_windows(self, stream_id: int | None) -> None:
        streams = self._streams.values() if not stream_id else [self._streams.get(stream_id)]
        for stream in streams:
            if stream is not None:
                stream.window.set()

    def _answered(self, queued: int) -> None:
        """`queued` bytes answer what the client sent in its last read; once more than
        `UNREAD_ANSWERS` of them wait behind a write the client does not take, it is told to
        calm down and the connection closes (its reads are dropped from then on)."""
        if self.writer.writes != self._writes_seen:  # it read some: the count starts again
            self._writes_seen, self._unread = self.writer.writes, 0
        self._unread += queued
        if self._unread > UNREAD_ANSWERS and not self._done.is_set():
            self._calm(f"more than {UNREAD_ANSWERS} bytes of answers to its frames left unread")

    def _count(self, kind: Flood) -> None:
        if self._done.is_set() or not self._floods.over(kind, trio.current_time()):
            return
        self._calm(self._floods.detail(kind))

    def _calm(self, detail: str) -> None:
        """GOAWAY ENHANCE_YOUR_CALM, logged, and the connection closes."""
        requests = self._front.requests
        if requests is not None:
            requests.event(
                "http2.enhance_your_calm", status=429, client_ip=self._client.ip, detail=detail
            )
        with contextlib.suppress(H2ProtocolError):
            self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, additional_data=detail.encode())
        self._done.set()

    # --- streams -----------------------------------------------------------------------------

    async def _serve_stream(
        self, stream: StreamChannel, fields: Headers, bodiless: bool, release: Release
    ) -> None:
        try:
            with stream.scope:
                await serve_stream(stream, fields, bodiless, self._client, self._front)
            if stream.late is not None:  # its request timeout fired
                reply, head = stream.late
                with contextlib.suppress(ClientGone):
                    await stream.send_reply(reply, head=head)
        finally:
            release()
            del self._streams[stream.stream_id]
            stream.release()
            if not stream.reset:
                if not stream.responded:
                    self.reset(stream.stream_id, ErrorCodes.CANCEL)
                elif not stream.ended:  # answered before the whole request came: stop it
                    self.reset(stream.stream_id, ErrorCodes.NO_ERROR)
            self.writer.poke_if_queued()
            if not self._streams:
                self._quiet_since = trio.current_time()
                self._became_quiet.set()
                if self._closing:
                    self._done.set()

    # --- ending ------------------------------------------------------------------------------

    def go_away(self) -> None:
        """GOAWAY NO_ERROR naming the last stream taken (built here: `h2` would close the
        connection for the streams still running); once per connection (a second one could
        only repeat it), and not on a connection that is already closing."""
        if self._closing or self._done.is_set():
            return
        last = self.h2.highest_inbound_stream_id
        self._last_stream = last
        self._closing = True
        frame = GoAwayFrame(0, last_stream_id=last, error_code=ErrorCodes.NO_ERROR)
        self.writer.push(frame.serialize())
        if not self._streams:
            self._done.set()

    async def _close_on_shutdown(self) -> None:
        await self._front.shutdown.wait()
        self.go_away()

    async def _close_when_idle(self) -> None:
        idle = self.limits.idle_timeout
        while True:
            if self._streams:
                self._became_quiet = trio.Event()
                await self._became_quiet.wait()
                continue
            deadline = self._quiet_since + idle
            if trio.current_time() >= deadline:
                self.go_away()
                return
            await trio.sleep_until(deadline)


async def serve_http2(
    stream: trio.abc.Stream, client: Client, front: Front, limits: Http2Limits
) -> None:
    """Serve a TLS connection whose client chose `h2`, until it closes."""
    await Http2Connection(stream, client, front, limits).serve()
