"""Connection-level limits on the wire, between a client and its upstream: early upstream
answers, exchanges that end abnormally, clients that stop reading, and slow heads on kept-alive
connections. Upstream connections are released (closed, never pooled) whenever an exchange did
not end cleanly.
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
from tests.eventually import eventually
from tests.test_dataplane import create_proxy
from tests.test_http_conformance import (
    HOST,
    TIMEOUT,
    Wire,
    client,
    exchange,
    raw_upstream,
    read_response,
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
    test says so; answers GET /big with BIG bytes, sent until done or cut; never answers
    GET /stall; and any other request with a 200 naming its connection. It records which of
    its connections were closed."""

    def __init__(self) -> None:
        self.accepted = 0
        self.refused_on = 0
        """The connection that carried the POST."""
        self.big_on = 0
        """The connection that carried GET /big."""
        self.stalled_on = 0
        """The connection that carried GET /stall (never answered)."""
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
                    if lines[0].startswith(b"GET /stall "):
                        self.stalled_on = number
                        continue
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


async def test_an_exchange_that_timed_out_closes_its_upstream_connection(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start_gateway(nursery, make_settings, proxy_request_timeout=0.5)
    backend = RawUpstream()
    port: int = await nursery.start(backend.serve)
    await create_proxy(storage, HOST, port)
    await until_served(gateway)
    assert (await exchange(gateway, request("GET /stall HTTP/1.1"))).status == 504
    await backend.until_closed(lambda: backend.stalled_on)
    opened = backend.accepted
    served = await exchange(gateway, request("GET /next HTTP/1.1"))
    assert served.body == b"connection %d" % (opened + 1)


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
            await wire.send(b"GET /echo HTTP/1.1\r\nHost: " + HOST.encode())  # never the rest
            assert await wire.closed_by_peer()


async def test_a_late_answer_on_a_kept_alive_connection_is_a_504_that_ends_it(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    """The request timeout is a scope of the connection, armed for each request while its
    upstream answers and disarmed once the answer's head is in: waiting longer than the timeout
    between requests does not fire it, and the late request, after others on the connection,
    gets the 504 and the connection's end."""
    gateway = await start_gateway(nursery, make_settings, proxy_request_timeout=0.5)
    backend = RawUpstream()
    port: int = await nursery.start(backend.serve)
    await create_proxy(storage, HOST, port)
    await until_served(gateway)
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            for _ in range(2):
                await wire.send(request("GET /next HTTP/1.1"))
                assert (await response(wire)).status == 200
                await trio.sleep(0.6)  # longer than the request timeout, between requests
            await wire.send(request("GET /stall HTTP/1.1"))
            late = await response(wire)
            assert (late.status, late.header(b"connection")) == (504, b"close")
            assert b'"gateway_timeout"' in late.body
            assert b"0.5s" in late.body
            assert await read_response(wire) is None  # the gateway closed the connection


Scripted = Callable[[bytes, int], tuple[bytes, bool] | None]
"""A raw backend's script: for a request head and its connection's number, what to answer and
whether to keep the connection open after it (None: close it unanswered)."""


async def _scripted_backend(
    script: Scripted,
    unasked: bytes = b"",
    sent: list[str] | None = None,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A backend that reads request heads (no bodies) and answers each as `script` says; then,
    a moment later, sends `unasked` on the connection it keeps. `sent` gets "answer" for each
    answer and "unasked" for each unasked send."""
    sent = [] if sent is None else sent
    accepted = 0

    async def serve(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        number, wire = accepted, Wire(stream)
        async with stream:
            # (the gateway closed it mid-head, or with bytes unread: the next send fails)
            with contextlib.suppress(trio.BrokenResourceError, EOFError):
                while (lines := await wire.head()) is not None:
                    scripted = script(b"\r\n".join(lines), number)
                    if scripted is None:
                        return
                    answer, keep = scripted
                    sent.append("answer")  # (before: counted once the client has it)
                    await wire.send(answer)
                    if not keep:
                        return
                    if unasked:
                        await trio.sleep(0.05)  # the gateway has pooled the connection
                        await wire.send(unasked)
                        sent.append("unasked")

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(serve, listeners)


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_a_request_on_a_pooled_connection_the_backend_closed_is_sent_again_on_a_new_one(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    """A pooled connection the backend closed while it waited is closed by the pool's check
    (`UpstreamPool.idle`), and the request goes out on a fresh connection: the client never
    sees it."""
    accepted: list[int] = []

    def answer_once_then_close(head: bytes, number: int) -> tuple[bytes, bool]:
        """(No `Connection: close`: the gateway pools it, and finds it closed on its next use,
        as when a backend's keep-alive timeout ends an idle connection.)"""
        accepted.append(number)
        return _ok(b"connection %d" % number), False

    port: int = await nursery.start(_scripted_backend, answer_once_then_close)
    await create_proxy(storage, HOST, port)
    await until_served(gateway)
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /first HTTP/1.1"))
            first = await response(wire)
            before = max(accepted)
            await trio.sleep(0.2)  # the backend's close reaches the pooled connection
            await wire.send(request("GET /second HTTP/1.1"))
            second = await response(wire)
    assert (first.status, second.status) == (200, 200)
    assert second.body == b"connection %d" % (before + 1)


async def test_a_get_its_pooled_connection_failed_under_is_sent_again_on_a_new_one(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    """A pooled connection can pass the pool's check and then be closed by the backend as the
    request arrives (its keep-alive timeout ending then): a GET is sent again, once, on a fresh
    connection (RFC 9110 §9.2.2), and the client gets that answer."""
    seen: list[tuple[bytes, int]] = []

    def close_the_first_connection_at_its_second_request(
        head: bytes, number: int
    ) -> tuple[bytes, bool] | None:
        if head.startswith(b"GET /second ") and (b"/first", number) in seen:
            seen.append((b"/second", number))
            return None  # read, then closed unanswered
        seen.append((head.split(b" ")[1], number))
        return _ok(b"connection %d" % number), True

    port: int = await nursery.start(
        _scripted_backend, close_the_first_connection_at_its_second_request
    )
    await create_proxy(storage, HOST, port)
    await until_served(gateway)
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /first HTTP/1.1"))
            assert (await response(wire)).status == 200
            (_, kept), count = seen[-1], len(seen)
            await wire.send(request("GET /second HTTP/1.1"))
            second = await response(wire)
    assert second.status == 200
    assert seen[count:] == [(b"/second", kept), (b"/second", max(n for _, n in seen))]
    assert second.body == b"connection %d" % seen[-1][1] != b"connection %d" % kept


async def test_a_request_that_is_not_idempotent_is_never_sent_twice(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    """RFC 9110 §9.2.2: a proxy does not retry a request that is not idempotent by itself. A
    POST without a body, on a pooled connection whose backend took it and closed, was sent again
    on a fresh connection: the backend acted on it twice (a payment made twice)."""
    posts: list[bytes] = []

    def drop_every_post(head: bytes, _: int) -> tuple[bytes, bool] | None:
        """GETs answered on a kept connection; a POST read, then its connection closed
        unanswered (as a backend that fails while it acts on it)."""
        if head.startswith(b"POST "):
            posts.append(head.split(b" ")[1])
            return None
        return _ok(b"ok"), True

    port: int = await nursery.start(_scripted_backend, drop_every_post)
    await create_proxy(storage, HOST, port)
    await until_served(gateway)
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /warm HTTP/1.1"))  # leaves a pooled connection
            assert (await response(wire)).status == 200
            await wire.send(request("POST /charge HTTP/1.1", "Content-Length: 0"))
            failed = await response(wire)
    assert failed.status == 502
    assert posts == [b"/charge"]


async def test_an_answer_the_backend_sent_unasked_on_an_idle_connection_reaches_no_client(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    """Response queue poisoning: a backend that sends a second response after its answer (one
    split by a header it let a client inject, or a bug) had it read, once its connection was
    pooled, as the answer to the next request on it: another client's. An idle connection
    found readable is closed instead of used, as nginx, HAProxy and Caddy close theirs."""
    sent: list[str] = []
    port: int = await nursery.start(
        _scripted_backend, lambda _, number: (_ok(b"genuine, connection %d" % number), True),
        _ok(b"poisoned"), sent,
    )  # fmt: skip
    await create_proxy(storage, HOST, port)
    await until_served(gateway)
    with trio.fail_after(TIMEOUT):
        for _ in range(3):

            async def every_answer_followed() -> bool:
                """Each answer's unasked one waits on its pooled connection (on loopback, bytes
                sent are in the receiver's socket when the send returns)."""
                return sent.count("unasked") == sent.count("answer")

            await eventually(every_answer_followed, what="the unasked answers sent")
            async with client(gateway) as bob:
                await bob.send(request("GET /second HTTP/1.1"))
                answered = await response(bob)
            assert answered.body.startswith(b"genuine"), answered.body
