"""The floor for `cpu_per_request.py`: the least a Trio proxy can do per keep-alive request.

    python benchmarks/trio_floor.py LISTEN_PORT BACKEND_PORT

One upstream connection per client connection; per request one read from the client (a small
request arrives in one), one write upstream, one read of the answer (a small response too), one
write back. No parsing, no rewriting, no logging: not a proxy anyone should run, only the cost
of Trio's sockets and scheduler for the same traffic, measured the same way.
"""

from __future__ import annotations

import sys
from functools import partial

import trio


async def forward(backend_port: int, client: trio.SocketStream) -> None:
    try:
        async with client, await trio.open_tcp_stream("127.0.0.1", backend_port) as upstream:
            while request := await client.receive_some(65536):
                await upstream.send_all(request)
                response = await upstream.receive_some(65536)
                if not response:
                    return
                await client.send_all(response)
    except trio.BrokenResourceError:
        pass  # the client (wrk at its end) reset the connection


async def main(port: int, backend_port: int) -> None:
    await trio.serve_tcp(partial(forward, backend_port), port, host="127.0.0.1")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]))
