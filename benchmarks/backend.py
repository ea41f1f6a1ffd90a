"""A lean keep-alive HTTP/1.1 benchmark backend on Trio + h11, run as its own process.

    python benchmarks/backend.py PORT      (PORT 0 picks a free one; the bound port is printed)

Endpoints:
    GET  /          a small 200 body
    GET  /bytes/N   N bytes, streamed in 64 KiB chunks, with a content-length
    POST /upload    reads the body in streaming and answers its length in bytes

Everything that can be built once is built once: the small response, the header lists and the
64 KiB chunk; bodies go out through `send_with_data_passthrough`, so h11 never copies them.
"""

from __future__ import annotations

import contextlib
import socket
import sys

import h11
import trio

CHUNK = 64 * 1024
READ_SIZE = 64 * 1024
MAX_HEAD_SIZE = 16 * 1024
BLOCK = bytes(range(256)) * (CHUNK // 256)
"""The content of every /bytes/N body: this block repeated, the last piece cut short."""

HELLO = b"hello from the benchmark backend\n"
_SERVER = (b"server", b"bench-backend")
_HELLO_HEAD = h11.Response(
    status_code=200,
    headers=[_SERVER, (b"content-type", b"text/plain"), (b"content-length", b"%d" % len(HELLO))],
)
_NOT_FOUND = b"not found\n"
_NOT_FOUND_HEAD = h11.Response(
    status_code=404,
    headers=[
        _SERVER,
        (b"content-type", b"text/plain"),
        (b"content-length", b"%d" % len(_NOT_FOUND)),
    ],
)


class Gone(Exception):
    """The client closed the connection or broke the protocol."""


async def _next_event(stream: trio.SocketStream, conn: h11.Connection) -> h11.Event:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as error:
            raise Gone from error
        if event is not h11.NEED_DATA:
            return event  # type: ignore[return-value]
        try:
            data = await stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise Gone from error
        conn.receive_data(data)


async def _send(stream: trio.SocketStream, conn: h11.Connection, event: h11.Event) -> None:
    try:
        pieces = conn.send_with_data_passthrough(event)
    except h11.LocalProtocolError as error:
        raise Gone from error
    try:
        for piece in pieces or ():
            await stream.send_all(piece)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
        raise Gone from error


async def _send_whole(
    stream: trio.SocketStream, conn: h11.Connection, head: h11.Response, body: bytes
) -> None:
    # One send for head, body and end: a small response is a single segment on the wire.
    try:
        data = b"".join(
            conn.send(event) or b"" for event in (head, h11.Data(data=body), h11.EndOfMessage())
        )
    except h11.LocalProtocolError as error:
        raise Gone from error
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
        raise Gone from error


async def _discard_body(stream: trio.SocketStream, conn: h11.Connection) -> int:
    """Read the request body to its end; returns its length."""
    length = 0
    while True:
        event = await _next_event(stream, conn)
        if isinstance(event, h11.Data):
            length += len(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return length
        else:
            raise Gone


async def _send_bytes(stream: trio.SocketStream, conn: h11.Connection, size: int) -> None:
    head = h11.Response(
        status_code=200,
        headers=[
            _SERVER,
            (b"content-type", b"application/octet-stream"),
            (b"content-length", b"%d" % size),
        ],
    )
    await _send(stream, conn, head)
    whole, rest = divmod(size, CHUNK)
    chunk = h11.Data(data=BLOCK)
    for _ in range(whole):
        await _send(stream, conn, chunk)
    if rest:
        await _send(stream, conn, h11.Data(data=BLOCK[:rest]))
    await _send(stream, conn, h11.EndOfMessage())


async def _respond(stream: trio.SocketStream, conn: h11.Connection, request: h11.Request) -> None:
    target = request.target
    if request.method == b"POST" and target == b"/upload":
        length = await _discard_body(stream, conn)
        body = b"%d" % length
        head = h11.Response(
            status_code=200,
            headers=[
                _SERVER,
                (b"content-type", b"text/plain"),
                (b"content-length", b"%d" % len(body)),
            ],
        )
        await _send_whole(stream, conn, head, body)
        return
    await _discard_body(stream, conn)
    if request.method == b"GET" and target == b"/":
        await _send_whole(stream, conn, _HELLO_HEAD, HELLO)
    elif request.method == b"GET" and target.startswith(b"/bytes/") and target[7:].isdigit():
        await _send_bytes(stream, conn, int(target[7:]))
    else:
        await _send_whole(stream, conn, _NOT_FOUND_HEAD, _NOT_FOUND)


async def handle(stream: trio.SocketStream) -> None:
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
    try:
        while True:
            event = await _next_event(stream, conn)
            if not isinstance(event, h11.Request):
                return
            await _respond(stream, conn, event)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except Gone:
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve(port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1", backlog=4096)
    bound = listeners[0].socket.getsockname()[1]
    print(f"bench backend listening on http://127.0.0.1:{bound}", flush=True)
    await trio.serve_listeners(handle, listeners)


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print("usage: python benchmarks/backend.py PORT", file=sys.stderr)
        raise SystemExit(2)
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve, int(sys.argv[1]))


if __name__ == "__main__":
    main()
