"""Connection-level limits on the wire: what one client (or one upstream) cannot make the gateway
do to everyone else. Early upstream answers, clients that stop reading, slow heads, too many
connections from one address, and the admin API's hostnames on the public port.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import trio

from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.backend import serve_backend
from tests.test_dataplane import create_proxy
from tests.test_http_conformance import (
    HOST,
    TIMEOUT,
    Wire,
    client,
    exchange,
    raw_upstream,
    request,
    response,
    until_served,
)

BIG = 64 * 1024 * 1024
"""More than every socket buffer between a client and a backend on loopback holds."""


async def start_gateway(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], **overrides: object
) -> Ready:
    ready: Ready = await nursery.start(
        functools.partial(serve, make_settings(**overrides), handle_signals=False)
    )
    return ready


TOO_LARGE = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n"


class RawUpstream:
    """An upstream that refuses a POST with 413 as soon as its head arrives, without reading the
    body (as servers do for a Content-Length over their limit), and reads nothing more until the
    test says so; answers GET /big with BIG bytes, sent until done or cut; and any other request
    with a 200 naming its connection. It records which of its connections were closed."""

    def __init__(self) -> None:
        self.accepted = 0
        self.refused_on = 0
        """The connection that carried the POST."""
        self.big_on = 0
        """The connection that carried GET /big."""
        self.closed: set[int] = set()
        """Connections numbered from 1 in order of accept (0 is none)."""
        self.changed = trio.Event()
        self.drain = trio.Event()
        """Set by the test: connections that answered early read on, to see the gateway's close."""

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            listeners: list[trio.SocketListener] = await nursery.start(
                functools.partial(trio.serve_tcp, self._connection, 0, host="127.0.0.1")
            )
            task_status.started(int(listeners[0].socket.getsockname()[1]))

    async def until_closed(self, number: Callable[[], int]) -> None:
        """Wait until the connection `number()` names has been closed (it may not exist yet)."""
        with trio.fail_after(TIMEOUT):
            while number() not in self.closed:
                self.changed = trio.Event()
                await self.changed.wait()

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.accepted += 1
        number = self.accepted
        wire = Wire(stream)
        try:
            async with stream:
                while (lines := await wire.head()) is not None:
                    if lines[0].startswith(b"POST "):
                        self.refused_on = number
                        await wire.send(TOO_LARGE)
                        await self.drain.wait()
                        await wire.rest()
                        return
                    if lines[0].startswith(b"GET /big "):
                        self.big_on = number
                        await wire.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
                        block = b"x" * (1024 * 1024)
                        for _ in range(BIG // len(block)):
                            await wire.send(block)
                        continue
                    body = b"connection %d" % number
                    await wire.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                    await wire.send(body)
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.closed.add(number)
            self.changed.set()


async def _send_body(stream: trio.abc.Stream, size: int) -> None:
    """Send `size` bytes of body, until done or until the gateway closes the connection."""
    block = b"x" * (1024 * 1024)
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        for _ in range(size // len(block)):
            await stream.send_all(block)


async def test_an_upstream_that_answers_before_the_body_is_sent_is_heard_and_not_reused(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    # A request timeout well inside the test's own: before the fix, the POST waited all of it
    # (the body could not be sent to an upstream that had stopped reading) and got a 504.
    gateway = await start_gateway(nursery, make_settings, proxy_request_timeout=TIMEOUT / 2)
    backend = RawUpstream()
    port: int = await nursery.start(backend.serve)
    await create_proxy(storage, HOST, port)
    await until_served(gateway)

    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire, trio.open_nursery() as sending:
            head = request("POST /upload HTTP/1.1", f"Content-Length: {BIG}")
            await wire.send(head)
            sending.start_soon(_send_body, wire.stream, BIG)
            refused = await response(wire)
            assert refused.status == 413
            assert refused.header(b"connection") == b"close"  # its body was never read whole
            assert await wire.closed_by_peer()
            sending.cancel_scope.cancel()
    backend.drain.set()
    await backend.until_closed(
        lambda: backend.refused_on
    )  # the gateway closed it rather than pool it
    opened = backend.accepted

    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /next HTTP/1.1"))
            served = await response(wire)
    assert served.status == 200
    assert served.body == b"connection %d" % (opened + 1)  # a new one


async def test_a_request_whose_body_went_out_whole_leaves_its_connection_pooled(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    for number in (1, 2, 3):
        start = f"POST /post/{number} HTTP/1.1"
        answer = await exchange(gateway, request(start, "Content-Length: 5", body=b"hello"))
        assert answer.status == 200
    assert len({received.connection for received in backend.received}) == 1


async def test_a_client_that_stops_reading_is_cut_and_its_upstream_connection_closed(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start_gateway(nursery, make_settings, proxy_send_timeout=0.5)
    backend = RawUpstream()
    port: int = await nursery.start(backend.serve)
    await create_proxy(storage, HOST, port)
    await until_served(gateway)
    async with client(gateway) as wire:
        await wire.send(request("GET /big HTTP/1.1"))
        # the client reads nothing: the gateway's sends toward it fill every buffer, then wait
        await backend.until_closed(lambda: backend.big_on)
        with trio.fail_after(TIMEOUT):
            received = await wire.rest()  # what the buffers held, then the gateway's close
    assert received.startswith(b"HTTP/1.1 200 ")
    assert len(received) < BIG


# --- The admin API's hostnames on the public port ----------------------------------------------


async def ask(port: int, data: bytes, *, source: str = "127.0.0.1") -> bytes:
    """Send `data` from `source` and read everything until the gateway closes."""
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
        async with stream:
            await stream.send_all(data)
            return await Wire(stream).rest()


def proxy_line(client_ip: str) -> bytes:
    """What a load balancer in front of PROXY_PROTOCOL_PORT sends first (PROXY protocol v1)."""
    return f"PROXY TCP4 {client_ip} 127.0.0.1 40000 80\r\n".encode()


HEALTH = request("GET /health HTTP/1.1", "Connection: close", host="localhost")


def reached_the_api(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 404 ") and b"unknown_host" in body:
        return False
    assert b'"components"' in body, answer  # /health's own answer
    return True


async def test_api_hostnames_answer_loopback_clients_only(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start_gateway(nursery, make_settings, trusted_proxies=["127.0.0.1/32"])
    assert reached_the_api(await ask(gateway.http_port, HEALTH))
    assert reached_the_api(await ask(gateway.http_port, HEALTH, source="127.0.0.2"))
    port = gateway.proxy_protocol_port
    # a trusted balancer on 127.0.0.1 speaks for the client: the client is what counts
    assert reached_the_api(await ask(port, proxy_line("127.0.0.9") + HEALTH))
    assert not reached_the_api(await ask(port, proxy_line("203.0.113.7") + HEALTH))
    # a local proxy forwarding for a remote client is not a local client
    forwarded = request(
        "GET /health HTTP/1.1",
        "X-Forwarded-For: 203.0.113.7",
        "Connection: close",
        host="localhost",
    )
    assert not reached_the_api(await ask(gateway.http_port, forwarded))
    via = request(
        "GET /health HTTP/1.1", "Forwarded: for=203.0.113.7", "Connection: close", host="localhost"
    )
    assert not reached_the_api(await ask(gateway.http_port, via))


async def test_api_hostnames_answer_no_one_when_turned_off(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start_gateway(nursery, make_settings, api_on_public_port="off")
    assert not reached_the_api(await ask(gateway.http_port, HEALTH))


# --- Open connections per client ---------------------------------------------------------------

SLOW_HEAD = b"GET /echo HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"
"""A request head still arriving: the rest of it comes when the test says."""


async def slow_connection(port: int, source: str, prefix: bytes = b"") -> Wire:
    """A connection from `source` that has sent `prefix` and the start of a request head."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    with contextlib.suppress(trio.BrokenResourceError):
        await stream.send_all(prefix + SLOW_HEAD)
    return Wire(stream)


async def finished(wire: Wire) -> int | None:
    """Finish the slow head; the status of the answer, or None when the gateway had closed it."""
    async with wire.stream:
        with contextlib.suppress(trio.BrokenResourceError):
            await wire.send(b"Connection: close\r\n\r\n")
        lines = await wire.head()
        return None if lines is None else int(lines[0].split(b" ")[1])


async def test_one_client_cannot_hold_more_connections_than_its_share(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    share = 8
    gateway = await start_gateway(
        nursery,
        make_settings,
        proxy_max_connections_per_ip=share,
        trusted_proxies=["127.0.0.1/32"],  # the test's load balancer
    )
    port: int = await nursery.start(functools.partial(serve_backend, "quart"))
    await create_proxy(storage, HOST, port)
    await until_served(gateway)

    with trio.fail_after(TIMEOUT):
        # a slowloris from 127.0.0.2, straight to the HTTP port and through a balancer that
        # names it: one share across the listeners
        slow = [await slow_connection(gateway.http_port, "127.0.0.2") for _ in range(20)]
        named = proxy_line("127.0.0.2")
        slow += [await slow_connection(gateway.proxy_protocol_port, "127.0.0.1", named)]
        # another client is served meanwhile, and so are the balancer's other clients
        get = request("GET /echo HTTP/1.1", "Connection: close")
        other = await ask(gateway.http_port, get, source="127.0.0.3")
        assert other.startswith(b"HTTP/1.1 200 ")
        for _ in range(share + 2):  # the balancer itself is not counted
            via = proxy_line("198.51.100.20") + request("GET /echo HTTP/1.1", "Connection: close")
            assert (await ask(gateway.proxy_protocol_port, via)).startswith(b"HTTP/1.1 200 ")
        statuses = [await finished(wire) for wire in slow]
    assert statuses.count(200) == share
    assert statuses.count(None) == len(slow) - share

    with trio.fail_after(TIMEOUT):  # closed connections give their share back
        again = [await slow_connection(gateway.http_port, "127.0.0.2") for _ in range(share)]
        assert [await finished(wire) for wire in again] == [200] * share


async def test_no_cap_when_turned_off(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start_gateway(nursery, make_settings, proxy_max_connections_per_ip=0)
    port: int = await nursery.start(functools.partial(serve_backend, "quart"))
    await create_proxy(storage, HOST, port)
    await until_served(gateway)
    with trio.fail_after(TIMEOUT):
        slow = [await slow_connection(gateway.http_port, "127.0.0.2") for _ in range(300)]
        assert [await finished(wire) for wire in slow] == [200] * len(slow)


async def test_the_next_request_s_head_has_the_header_timeout(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start_gateway(nursery, make_settings, proxy_header_timeout=0.5)
    port: int = await nursery.start(functools.partial(serve_backend, "quart"))
    await create_proxy(storage, HOST, port)
    await until_served(gateway)
    with trio.fail_after(TIMEOUT):  # far below the idle timeout (75 s)
        async with client(gateway) as wire:
            await wire.send(request("GET /echo HTTP/1.1"))
            assert (await response(wire)).status == 200
            await wire.send(SLOW_HEAD)  # and never the rest
            assert await wire.closed_by_peer()
