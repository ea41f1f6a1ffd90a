"""The accept loop out of file descriptors, on trio's autojump clock: it retries every 0.1 virtual
seconds, and the connection waiting in the backlog is served at the first retry after a
descriptor is free again.

The shortage is real: the process's soft RLIMIT_NOFILE is lowered to the lowest free descriptor
number, so the kernel's accept() fails with EMFILE. The client connects before the loop starts
and before the limit is lowered, so nothing waits on real I/O while the clock jumps.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio
import trio.testing

from oauthproxy.proxy.dispatcher import serve_listener
from oauthproxy.proxy.sockets import LeanSocketStream


@contextmanager
def no_descriptor_left() -> Iterator[None]:
    """Until the block ends, opening one more file descriptor fails with EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_accept_retries_every_tenth_of_a_second_while_descriptors_run_out(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))  # waits in the backlog
    served: list[float] = []
    done = trio.Event()

    async def handle(stream: LeanSocketStream) -> None:
        served.append(trio.current_time())
        done.set()
        await stream.aclose()

    caplog.set_level(logging.WARNING, logger="oauthproxy.proxy.dispatcher")
    try:
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            with no_descriptor_left():
                nursery.start_soon(serve_listener, listener, handle, nursery)
                await trio.sleep(0.35)
            await done.wait()
            nursery.cancel_scope.cancel()
    finally:
        client.close()
        await listener.aclose()
    assert [round(at - start, 6) for at in served] == [0.4]
    assert [r.getMessage() for r in caplog.records] == [
        "accept failed (EMFILE); retrying shortly"
    ] * 4
