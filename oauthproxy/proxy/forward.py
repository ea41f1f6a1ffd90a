"""Forward one request upstream and stream the response back, both bodies chunk by chunk.

Memory per request is bounded by one read (64 KiB) in each direction: we never read a body whole.
A WebSocket (or any) upgrade answered with 101 becomes a byte splice in both directions.
"""

from __future__ import annotations

import select
from dataclasses import dataclass

import h11
import trio

from oauthproxy.proxy.headers import (
    Client,
    Identity,
    RequestRewrite,
    ResponseRewrite,
    client_response_headers,
    request_shape,
    upstream_request_headers,
)
from oauthproxy.proxy.http import (
    READ_SIZE,
    ClientGone,
    UpstreamGone,
    next_event,
    pairs,
    reusable,
    send,
    send_reply,
    serialize,
    write,
)
from oauthproxy.proxy.responses import error_reply
from oauthproxy.proxy.upstream import (
    Origin,
    UpstreamConnection,
    UpstreamPool,
    UpstreamUnavailable,
)


@dataclass(frozen=True)
class Destination:
    """Where one request goes and how its headers change."""

    origin: Origin
    rewrite: RequestRewrite
    response: ResponseRewrite
    request_timeout: float


class _NoResponse(Exception):
    """The upstream failed before it sent a response head (so the client can get a 502/504)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def _idle_connection_is_closed(connection: UpstreamConnection) -> bool:
    """An idle keep-alive connection that is readable was closed (or sent junk): don't reuse it."""
    stream = connection.stream
    socket_stream = getattr(stream, "transport_stream", stream)
    sock = getattr(socket_stream, "socket", None)
    if sock is None:
        return False
    readable, _, _ = select.select([sock.fileno()], [], [], 0)
    return bool(readable)


async def _open(pool: UpstreamPool, origin: Origin, *, check_idle: bool) -> UpstreamConnection:
    """A connection to `origin`. When the request could not be retried (it streams a body),
    idle connections the upstream closed meanwhile are weeded out first."""
    connection = await pool.acquire(origin)
    while check_idle and connection.reused and _idle_connection_is_closed(connection):
        await trio.aclose_forcefully(connection.stream)
        connection = await pool.acquire(origin)
    return connection


async def _end_of_bodiless_request(
    client_stream: trio.abc.Stream, client_conn: h11.Connection
) -> None:
    if not isinstance(await next_event(client_stream, client_conn), h11.EndOfMessage):
        raise ClientGone("a request without a body sent one")


async def _send_request(
    client_stream: trio.abc.Stream,
    client_conn: h11.Connection,
    upstream: UpstreamConnection,
    head: h11.Request,
    has_body: bool,
) -> None:
    """Send the request head and stream the client's body (if it has one) upstream."""
    if not has_body:
        data = serialize(upstream.conn, head, UpstreamGone) + serialize(
            upstream.conn, h11.EndOfMessage(), UpstreamGone
        )
        await write(upstream.stream, data, UpstreamGone)
        return
    await send(upstream.stream, upstream.conn, head, UpstreamGone)
    if client_conn.they_are_waiting_for_100_continue:
        await send(
            client_stream, client_conn, h11.InformationalResponse(status_code=100, headers=[])
        )
    while True:
        event = await next_event(client_stream, client_conn)
        if isinstance(event, h11.Data):
            await send(upstream.stream, upstream.conn, event, UpstreamGone)
        elif isinstance(event, h11.EndOfMessage):
            await send(upstream.stream, upstream.conn, h11.EndOfMessage(), UpstreamGone)
            return
        else:
            raise ClientGone(f"unexpected {type(event).__name__} in a request body")


async def _response_head(upstream: UpstreamConnection) -> h11.Response | h11.InformationalResponse:
    while True:
        event = await next_event(upstream.stream, upstream.conn, UpstreamGone)
        if isinstance(event, h11.Response):
            return event
        if isinstance(event, h11.InformationalResponse):
            if event.status_code == 101:
                return event
            continue  # 100 Continue and friends are between us and the upstream
        raise UpstreamGone("the upstream closed the connection before responding")


async def _exchange(
    client_stream: trio.abc.Stream,
    client_conn: h11.Connection,
    request: h11.Request,
    route: Destination,
    pool: UpstreamPool,
    client: Client,
    received: list[tuple[bytes, bytes]],
    identity: Identity,
) -> tuple[UpstreamConnection, h11.Response | h11.InformationalResponse]:
    """Send the request and wait for the response head, within the request timeout."""
    shape = request_shape(received)
    has_body = shape.has_body
    # h11 validated every received name and value; ours are constants, addresses, and custom
    # headers validated with the proxy's configuration. So h11 need not run its regexes again.
    head = h11.Request(
        method=request.method,
        target=route.origin.target(request.target),
        headers=upstream_request_headers(
            received, route.rewrite, client, upgrade=shape.upgrade, identity=identity
        ),
        _parsed=True,
    )
    if not has_body:
        await _end_of_bodiless_request(client_stream, client_conn)
    with trio.CancelScope(deadline=trio.current_time() + route.request_timeout):
        try:
            upstream = await _open(pool, route.origin, check_idle=has_body)
        except UpstreamUnavailable as error:
            raise _NoResponse(502, "bad_gateway", str(error)) from error
        try:
            await _send_request(client_stream, client_conn, upstream, head, has_body)
            return upstream, await _response_head(upstream)
        except UpstreamGone as error:
            await trio.aclose_forcefully(upstream.stream)
            if upstream.reused and not has_body:
                fresh = await pool.connect_fresh(route.origin)
                await _send_request(client_stream, client_conn, fresh, head, has_body)
                return fresh, await _response_head(fresh)
            raise _NoResponse(502, "bad_gateway", f"the upstream failed: {error}") from error
        except BaseException:
            await trio.aclose_forcefully(upstream.stream)
            raise
    raise _NoResponse(
        504, "gateway_timeout", f"the upstream did not answer within {route.request_timeout:g}s"
    )


async def forward(
    client_stream: trio.abc.Stream,
    client_conn: h11.Connection,
    request: h11.Request,
    route: Destination,
    pool: UpstreamPool,
    client: Client,
    received: list[tuple[bytes, bytes]],
    identity: Identity = (),
) -> bool:
    """Proxy one request (`received`: its headers as pairs). Returns whether the client
    connection can carry another request."""
    try:
        upstream, response = await _exchange(
            client_stream, client_conn, request, route, pool, client, received, identity
        )
    except (_NoResponse, UpstreamUnavailable, UpstreamGone) as failure:
        status, error, detail = (
            (failure.status, failure.error, failure.detail)
            if isinstance(failure, _NoResponse)
            else (502, "bad_gateway", str(failure))
        )
        if client_conn.our_state is not h11.SEND_RESPONSE:
            return False
        await send_reply(client_stream, client_conn, error_reply(status, error, detail), close=True)
        return False
    try:
        if isinstance(response, h11.InformationalResponse):
            await _switch_protocols(client_stream, client_conn, upstream, response, route)
            return False
        await _stream_response(client_stream, client_conn, upstream, response, route)
    except BaseException:
        await trio.aclose_forcefully(upstream.stream)
        raise
    await pool.release(upstream)
    return reusable(client_conn)


async def _stream_response(
    client_stream: trio.abc.Stream,
    client_conn: h11.Connection,
    upstream: UpstreamConnection,
    response: h11.Response,
    route: Destination,
) -> None:
    """Relay the response. What one upstream read yields goes out in one write: a small
    response is a single send, a large one a write per read (so memory stays bounded)."""
    headers = client_response_headers(pairs(response.headers), route.response, switching=False)
    head = h11.Response(
        status_code=response.status_code, headers=headers, reason=response.reason, _parsed=True
    )
    pending = serialize(client_conn, head)
    while True:
        try:
            event = upstream.conn.next_event()
        except h11.RemoteProtocolError as error:
            raise UpstreamGone(str(error)) from error
        if event is h11.NEED_DATA:
            await write(client_stream, pending)
            pending = b""
            try:
                data = await upstream.stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                raise UpstreamGone(str(error)) from error
            upstream.conn.receive_data(bytes(data))
        elif isinstance(event, h11.Data):
            pending += serialize(client_conn, event)
        elif isinstance(event, h11.EndOfMessage):
            await write(client_stream, pending + serialize(client_conn, h11.EndOfMessage()))
            return
        else:
            raise UpstreamGone("the upstream closed the connection mid-response")


async def _switch_protocols(
    client_stream: trio.abc.Stream,
    client_conn: h11.Connection,
    upstream: UpstreamConnection,
    response: h11.InformationalResponse,
    route: Destination,
) -> None:
    """Answer 101 to the client, then copy bytes both ways until either side closes."""
    headers = client_response_headers(pairs(response.headers), route.response, switching=True)
    await send(
        client_stream, client_conn, h11.InformationalResponse(status_code=101, headers=headers)
    )
    from_client = client_conn.trailing_data[0]
    from_upstream = upstream.conn.trailing_data[0]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pump, client_stream, upstream.stream, from_client, nursery.cancel_scope)
        nursery.start_soon(
            _pump, upstream.stream, client_stream, from_upstream, nursery.cancel_scope
        )
    await trio.aclose_forcefully(upstream.stream)


async def _pump(
    source: trio.abc.Stream, sink: trio.abc.Stream, pending: bytes, done: trio.CancelScope
) -> None:
    try:
        if pending:
            await sink.send_all(pending)
        while data := await source.receive_some(READ_SIZE):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        done.cancel()
