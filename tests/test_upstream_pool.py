"""The upstream pool checks its idle connections itself: one the backend closed while it waited
(or sent on unasked: tests/test_dataplane_limits.py) is closed, never handed to a request
(forwarding never looks at sockets)."""

from __future__ import annotations

import os
import resource
import ssl

import trio

from oauthproxy.proxy.sockets import LeanSocketStream
from oauthproxy.proxy.upstream import UpstreamPool, parse_origin


async def _closing_backend(
    closing: trio.Event, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Accepts connections and closes each once `closing` is set."""

    async def connection(stream: trio.SocketStream) -> None:
        await closing.wait()
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(connection, listeners)


async def test_an_idle_connection_the_backend_closed_is_weeded_out(nursery: trio.Nursery) -> None:
    closing = trio.Event()
    port: int = await nursery.start(_closing_backend, closing)
    origin = parse_origin(f"http://127.0.0.1:{port}")
    pool = UpstreamPool(connect_timeout=5, tls=ssl.create_default_context())
    await pool.retarget(frozenset({origin.key}))
    idle = await pool.acquire(origin)
    await pool.release(idle)
    assert pool.idle(origin) is idle and idle.reused  # open: handed out
    await pool.release(idle)
    closing.set()
    assert isinstance(idle.stream, LeanSocketStream)
    with trio.fail_after(5):
        await trio.lowlevel.wait_readable(idle.stream.socket)  # the backend's FIN is here

    assert pool.idle(origin) is None
    assert idle.stream.fd == -1  # closed by the pool
    handed = await pool.acquire(origin)
    assert (handed is idle, handed.reused) == (False, False)
    await pool.clear()
    await trio.aclose_forcefully(handed.stream)


async def test_a_connection_past_descriptor_1023_is_checked_too(nursery: trio.Nursery) -> None:
    """The check used `select.select`, which raises ValueError for a descriptor past 1023
    (FD_SETSIZE): once the gateway held ~1,000 connections (or an anonymous client opened that
    many idle ones), every request the pool checked for (a POST then) failed its connection's task
    with a logged exception and no answer (an attack hunt)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    filler = [os.dup(0) for _ in range(1100)]  # the next descriptors are past 1023
    try:
        closing = trio.Event()
        port: int = await nursery.start(_closing_backend, closing)
        origin = parse_origin(f"http://127.0.0.1:{port}")
        pool = UpstreamPool(connect_timeout=5, tls=ssl.create_default_context())
        await pool.retarget(frozenset({origin.key}))
        idle = await pool.acquire(origin)
        assert isinstance(idle.stream, LeanSocketStream) and idle.stream.fd > 1023
        await pool.release(idle)
        assert await pool.acquire(origin) is idle  # open: handed out
        await pool.release(idle)
        closing.set()
        with trio.fail_after(5):
            await trio.lowlevel.wait_readable(idle.stream.socket)
        fresh = await pool.acquire(origin)  # closed: weeded out
        assert fresh is not idle
        await trio.aclose_forcefully(fresh.stream)
        await pool.clear()
    finally:
        for descriptor in filler:
            os.close(descriptor)
