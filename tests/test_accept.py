"""The accept loop's sockets: built without trio's `SocketStream`, they still get its options
(TCP_NODELAY, TCP_NOTSENT_LOWAT: set once on the listening socket, inherited by each accepted
one), and know their peer's address from `accept` itself."""

from __future__ import annotations

import socket

import trio

from oauthproxy.proxy.dispatcher import serve_listener
from oauthproxy.proxy.sockets import LeanSocketStream


async def test_an_accepted_connection_has_trios_options_and_its_peer() -> None:
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    seen: dict[str, object] = {}

    async def handle(stream: LeanSocketStream) -> None:
        tcp = socket.IPPROTO_TCP
        seen["nodelay"] = stream.socket.getsockopt(tcp, socket.TCP_NODELAY)
        seen["notsent_lowat"] = stream.socket.getsockopt(tcp, socket.TCP_NOTSENT_LOWAT)
        seen["peer"] = stream.peer_ip()
        seen["request"] = await stream.receive_some()
        await stream.send_all(b"pong")
        await stream.send_eof()
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_listener, listener, handle, nursery)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(b"ping")
        reply = b""
        with trio.fail_after(10):
            while chunk := await client.receive_some():
                reply += chunk
        local = client.socket.getsockname()[0]
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert reply == b"pong"
    assert seen == {"nodelay": 1, "notsent_lowat": 2**14, "peer": local, "request": b"ping"}
