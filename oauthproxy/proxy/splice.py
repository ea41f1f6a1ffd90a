"""A `101 Switching Protocols` answer (WebSocket, say): the connection stops being HTTP, and
the gateway copies bytes both ways until either side closes, or until nothing has gone either
way for `PROXY_WEBSOCKET_IDLE_TIMEOUT` (every other phase of a connection is bounded in time: a
silent splice held its client's connection slot and an upstream connection for ever). The
upstream connection ends with it.
"""

from __future__ import annotations

import trio

from oauthproxy.proxy.codec import Head
from oauthproxy.proxy.framing import Framing, head_bytes, status_line
from oauthproxy.proxy.headers import ResponseRewrite, client_response_headers
from oauthproxy.proxy.http import READ_SIZE, Channel
from oauthproxy.proxy.upstream import UpstreamConnection


async def switch_protocols(
    client: Channel,
    upstream: UpstreamConnection,
    response: Head,
    rewrite: ResponseRewrite,
    idle_timeout: float,
) -> None:
    """Answer 101 to the client, then copy bytes both ways until either side closes, or both
    are silent for `idle_timeout` seconds."""
    headers = client_response_headers(response.headers, rewrite, switching=True)
    head = head_bytes(status_line(101, response.reason), headers)
    await client.send(client.codec.send_response(head, Framing.NONE, switching=True))
    from_client = client.codec.trailing
    from_upstream = upstream.channel.codec.trailing
    client_stream, upstream_stream = client.stream, upstream.stream
    async with trio.open_nursery() as nursery:
        done = nursery.cancel_scope  # (its deadline: `idle_timeout` after the last data)
        done.deadline = trio.current_time() + idle_timeout
        nursery.start_soon(_pump, client_stream, upstream_stream, from_client, done, idle_timeout)
        nursery.start_soon(_pump, upstream_stream, client_stream, from_upstream, done, idle_timeout)
    await trio.aclose_forcefully(upstream_stream)


async def _pump(
    source: trio.abc.Stream,
    sink: trio.abc.Stream,
    pending: bytes,
    done: trio.CancelScope,
    idle_timeout: float,
) -> None:
    """One direction of the splice; when it ends (either side closed or broke), both do. Data
    either way moves the splice's deadline (`done`'s) `idle_timeout` on."""
    try:
        if pending:
            await sink.send_all(pending)
        while data := await source.receive_some(READ_SIZE):
            done.deadline = trio.current_time() + idle_timeout
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        done.cancel()
