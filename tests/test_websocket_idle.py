"""A WebSocket that carries nothing either way for PROXY_WEBSOCKET_IDLE_TIMEOUT is closed, with
its upstream connection; traffic either way starts the wait again. Every other phase of a
connection is bounded in time, and a silent splice held its client's connection slot (and an
upstream connection to the owner's backend) for ever: an anonymous client could keep as many
as PROXY_MAX_CONNECTIONS_PER_IP open from each address, without end."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import trio

from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.test_dataplane import create_proxy
from tests.test_dataplane_limits import start_gateway
from tests.test_http_conformance import TIMEOUT, Wire, client, request, serve_raw
from tests.test_request_wire import until_up

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


class EchoWebSocketBackend:
    """Answers plain requests 200; accepts every WebSocket handshake (the right
    Sec-WebSocket-Accept), then sends back whatever bytes come, until the gateway closes.
    `spliced_closed` is set when a WebSocket connection ends."""

    def __init__(self) -> None:
        self.spliced_closed = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_raw(self._connection, task_status)

    async def _connection(self, stream: trio.SocketStream) -> None:
        spliced = False
        wire = Wire(stream)
        try:
            while (lines := await wire.head()) is not None:
                keys = [
                    line.split(b":", 1)[1].strip()
                    for line in lines
                    if line.lower().startswith(b"sec-websocket-key:")
                ]
                if keys:
                    break
                await wire.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nup")
            else:
                return
            spliced = True
            accept = base64.b64encode(hashlib.sha1(keys[0] + GUID).digest())  # noqa: S324
            await wire.send(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            if spliced:
                self.spliced_closed.set()
            await trio.aclose_forcefully(stream)


def _upgrade(host: str) -> bytes:
    return request(
        "GET /ws HTTP/1.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY.decode()}",
        "Sec-WebSocket-Version: 13",
        host=host,
    )


async def test_a_silent_websocket_is_closed_and_a_busy_one_is_not(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start_gateway(nursery, make_settings, proxy_websocket_idle_timeout=1)
    backend = EchoWebSocketBackend()
    port = await nursery.start(backend.serve)
    host = "ws-idle.test"
    await create_proxy(storage, host, port)
    await until_up(gateway, host)
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(_upgrade(host))
            head = await wire.head()
            assert head is not None and head[0].startswith(b"HTTP/1.1 101"), head
            for number in range(6):  # 3 s of traffic, a message every half second: kept open
                await wire.send(b"ping %d" % number)
                assert await wire.exactly(6) == b"ping %d" % number
                await trio.sleep(0.5)
            silent_since = trio.current_time()
            assert await wire.closed_by_peer()  # then silence: closed after about a second
            assert trio.current_time() - silent_since < 5
    with trio.fail_after(5):  # and the upstream connection with it
        await backend.spliced_closed.wait()
