"""A `101 Switching Protocols` answer (WebSocket, say): the connection stops being HTTP, and
the gateway copies bytes both ways until either side closes. The upstream connection ends with it.
"""

from __future__ import annotations

import trio

from oauthproxy.proxy.codec import Head
from oauthproxy.proxy.framing import Framing, head_bytes, status_line
from oauthproxy.proxy.headers import ResponseRewrite, client_response_headers
from oauthproxy.proxy.http import READ_SIZE, Channel
from oauthproxy.proxy.upstream import UpstreamConnection


async def switch_protocols(
    client: Channel, upstream: UpstreamConnection, response: Head, rewrite: ResponseRewrite
) -> None:
    """Answer 101 to the client, then copy bytes both ways until either side closes."""
    headers = client_response_headers(response.headers, rewrite, switching=True)
    head = head_bytes(status_line(101, response.reason), headers)
    await client.send(client.codec.send_response(head, Framing.NONE, switching=True))
    from_client = client.codec.trailing
    from_upstream = upstream.channel.codec.trailing
    client_stream, upstream_stream = client.stream, upstream.stream
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pump, client_stream, upstream_stream, from_client, nursery.cancel_scope)
        nursery.start_soon(
            _pump, upstream_stream, client_stream, from_upstream, nursery.cancel_scope
        )
    await trio.aclose_forcefully(upstream_stream)


async def _pump(
    source: trio.abc.Stream, sink: trio.abc.Stream, pending: bytes, done: trio.CancelScope
) -> None:
    """One direction of the splice; when it ends (either side closed or broke), both do."""
    try:
        if pending:
            await sink.send_all(pending)
        while data := await source.receive_some(READ_SIZE):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        done.cancel()
