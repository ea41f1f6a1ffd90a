"""h11 on Trio streams: read the next event, write events, reply with a whole response."""

from __future__ import annotations

import h11
import trio

from oauthproxy.proxy.responses import Reply

READ_SIZE = 64 * 1024
MAX_HEAD_SIZE = 64 * 1024


class PeerClosed(Exception):
    """The other side went away or broke the protocol."""


class ClientGone(PeerClosed):
    """The client went away or broke the protocol."""


class UpstreamGone(PeerClosed):
    """The upstream went away or broke the protocol."""


async def next_event(
    stream: trio.abc.Stream, conn: h11.Connection, closed: type[PeerClosed] = ClientGone
) -> h11.Event:
    """The next h11 event, reading from `stream` as needed; `closed` is raised on errors."""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as error:
            raise closed(str(error)) from error
        if event is not h11.NEED_DATA:
            return event  # type: ignore[return-value]
        try:
            data = await stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            raise closed(str(error)) from error
        conn.receive_data(bytes(data))


def serialize(
    conn: h11.Connection, event: h11.Event, closed: type[PeerClosed] = ClientGone
) -> bytes:
    """The bytes for `event` (h11 tracks the connection's state as it goes)."""
    try:
        return conn.send(event) or b""
    except h11.LocalProtocolError as error:
        raise closed(str(error)) from error


async def write(
    stream: trio.abc.Stream, data: bytes, closed: type[PeerClosed] = ClientGone
) -> None:
    if data:
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            raise closed(str(error)) from error


async def send(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    event: h11.Event,
    closed: type[PeerClosed] = ClientGone,
) -> None:
    await write(stream, serialize(conn, event, closed), closed)


async def send_reply(
    stream: trio.abc.Stream, conn: h11.Connection, reply: Reply, *, close: bool = False
) -> None:
    headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send(stream, conn, h11.Response(status_code=reply.status, headers=headers))
    await send(stream, conn, h11.Data(data=reply.body))
    await send(stream, conn, h11.EndOfMessage())


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


def reusable(conn: h11.Connection) -> bool:
    """Whether both sides finished their message and neither asked to close."""
    return conn.our_state is h11.DONE and conn.their_state is h11.DONE


def pairs(headers: h11._headers.Headers) -> list[tuple[bytes, bytes]]:
    """An event's headers as (lower-case name, value) pairs, fast.

    h11 keeps them as (raw name, name, value) triples; iterating its `Headers` sequence goes
    through `__getitem__` one item at a time, which shows in profiles of the proxy.
    """
    triples = getattr(headers, "_full_items", None)
    if triples is None:
        return list(headers)
    return [(name, value) for _, name, value in triples]


def header(event: h11.Request | h11.Response, name: bytes) -> bytes:
    for key, value in pairs(event.headers):
        if key == name:
            return bytes(value)
    return b""


def request_host(request: h11.Request) -> str:
    """The Host header without its port, lower-case: the hostname that picks the instance."""
    return host_of(pairs(request.headers))


def header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    raw = next((value for key, value in headers if key == name), b"")
    return raw.decode("latin-1").strip()


def host_of(headers: list[tuple[bytes, bytes]]) -> str:
    """`request_host` for headers already taken out of their event."""
    host = header_value(headers, b"host").lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host
