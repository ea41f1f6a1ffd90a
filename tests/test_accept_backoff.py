"""The accept loop out of file descriptors, on trio's autojump clock: it retries every 0.1 virtual
seconds, and the connection waiting in the backlog is served at the first retry after a
descriptor is free again.

The shortage is real: the process's soft RLIMIT_NOFILE is lowered to the lowest free descriptor
number, so the kernel's accept() fails with EMFILE. The client connects before the loop starts
and before the limit is lowered, so nothing waits on real I/O while the clock jumps.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


async def _scenario() -> dict[str, list[object]]:
    """Run the accept loop out of descriptors on the autojump clock; what it served and logged."""
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))  # waits in the backlog
    served: list[float] = []
    done = trio.Event()

    async def handle(stream: LeanSocketStream) -> None:
        served.append(trio.current_time())
        done.set()
        await stream.aclose()

    messages: list[str] = []
    catcher = logging.Handler(logging.WARNING)
    catcher.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("oauthproxy.proxy.dispatcher").addHandler(catcher)
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
    return {"served": [round(at - start, 6) for at in served], "logged": list(messages)}


def main() -> None:
    """The child process's entry: the scenario's result as one JSON line on stdout."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    print(json.dumps(trio.run(_scenario, clock=clock)))


async def test_accept_retries_every_tenth_of_a_second_while_descriptors_run_out() -> None:
    # In a process of its own: the descriptor limit is per process, and any other thread of the
    # test run closing a descriptor (a background image build, trio's thread cache) would let
    # accept() succeed early.
    ran = await trio.run_process(
        [sys.executable, "-c", "from tests.test_accept_backoff import main; main()"],
        capture_stdout=True,
        cwd=Path(__file__).parent.parent,
    )
    result = json.loads(ran.stdout)
    assert result["served"] == [0.4]
    assert result["logged"] == ["accept failed (EMFILE); retrying shortly"] * 4
