"""A small HTTP/2 client over real TLS for tests: the `h2` library on a `trio.SSLStream`, so a
test can send what curl would not (forged pseudo-headers, a reset flood) and see every frame's
effect."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)


@dataclass
class H2Answer:
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    pieces: list[bytes] = field(default_factory=list)
    """The body as it arrived, DATA frame by DATA frame."""
    reset: int | None = None
    """The RST_STREAM error code, when the stream was reset."""


class H2Client:
    def __init__(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        self.stream = stream
        self.h2 = H2Connection(
            H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,  # so tests can send malformed fields
            )
        )
        self.terminated: ConnectionTerminated | None = None
        self.acknowledge = True
        """Reopen the windows for the DATA read (False: a client that stops reading)."""
        self._answers: dict[int, H2Answer] = {}
        self._ended: set[int] = set()

    @classmethod
    async def connect(cls, port: int, server_name: str, ca: Path) -> H2Client:
        context = ssl.create_default_context(cafile=str(ca))
        context.set_alpn_protocols(["h2"])
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(tcp, context, server_hostname=server_name)
        await stream.do_handshake()
        assert stream.selected_alpn_protocol() == "h2"
        client = cls(stream)
        client.h2.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def send(
        self,
        authority: str,
        path: str,
        *,
        method: str = "GET",
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> int:
        """Open a stream with this request (body in one go, within the default windows)."""
        stream_id = self.h2.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            *((name.lower().encode(), value.encode()) for name, value in headers),
        ]
        self.h2.send_headers(stream_id, fields, end_stream=not body)
        if body:
            self.h2.send_data(stream_id, body, end_stream=True)
        self._answers[stream_id] = H2Answer()
        await self.flush()
        return stream_id

    async def request(self, authority: str, path: str, **options: object) -> H2Answer:
        stream_id = await self.send(authority, path, **options)  # type: ignore[arg-type]
        return await self.answer(stream_id)

    async def answer(self, stream_id: int) -> H2Answer:
        while stream_id not in self._ended:
            if await self.read() is None:
                raise trio.BrokenResourceError("the connection closed")
        return self._answers[stream_id]

    async def read(self) -> list[Event] | None:
        """One read's events (None: the server closed the connection)."""
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:  # closed without close_notify
            return None
        if not data:
            return None
        events = self.h2.receive_data(data)
        for event in events:
            self._note(event)
        if self.terminated is None:
            await self.flush()
        return events

    def _note(self, event: Event) -> None:
        if isinstance(event, ResponseReceived) and event.stream_id in self._answers:
            answer = self._answers[event.stream_id]
            answer.headers = dict(event.headers or [])
            answer.status = int(answer.headers.pop(b":status"))
        elif isinstance(event, DataReceived) and event.stream_id in self._answers:
            answer = self._answers[event.stream_id]
            answer.body += event.data or b""
            answer.pieces.append(event.data or b"")
            if self.acknowledge:
                self.h2.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id
                )
        elif isinstance(event, StreamEnded) and event.stream_id is not None:
            self._ended.add(event.stream_id)
        elif isinstance(event, StreamReset) and event.stream_id in self._answers:
            self._answers[event.stream_id].reset = event.error_code
            self._ended.add(event.stream_id)
        elif isinstance(event, ConnectionTerminated):
            self.terminated = event

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
