"""Forward one request upstream and stream the response back, both bodies chunk by chunk.

Memory per request is bounded by one read (64 KiB) in each direction: we never read a body whole.
A WebSocket upgrade answered with an accepting 101 becomes a byte splice in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from oauthproxy.proxy.codec import END, Head, State
from oauthproxy.proxy.exchange import Exchange
from oauthproxy.proxy.framing import CONTINUE, Framing, head_bytes, request_line, status_line
from oauthproxy.proxy.headers import (
    RequestRewrite,
    ResponseRewrite,
    client_response_headers,
    upstream_request_headers,
    websocket_accepted,
)
from oauthproxy.proxy.http import Channel, ClientGone, PeerClosed, UpstreamGone
from oauthproxy.proxy.responses import Reply, error_reply
from oauthproxy.proxy.splice import switch_protocols
from oauthproxy.proxy.upstream import (
    Origin,
    UpstreamConnection,
    UpstreamUnavailable,
)


@dataclass(frozen=True)
class Destination:
    """Where one request goes and how its headers change."""

    origin: Origin
    rewrite: RequestRewrite
    response: ResponseRewrite
    request_timeout: float
    upstream: str = ""
    """The target URL, as the request log names it."""
    route_id: str = ""
    """The route that chose this destination (empty: the proxy's own target)."""
    down: str | None = None
    """The Docker service this goes to, when its container is known not to run: the request is
    answered 503 at once instead of waiting for a connection that cannot succeed."""
    websocket_idle_timeout: float = 3600.0
    """A WebSocket to it that carries nothing either way for this long is closed."""


_IDLE, _SWITCHED = State.IDLE, State.SWITCHED
"""(An enum's class attributes cost a lookup each: the hot path reads these.)"""


class _NoResponse(Exception):
    """The upstream failed before it sent a response head (so the client can get a 502/504)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


async def relay(source: Channel, sink: Channel, pending: bytes, *, last: bool = False) -> None:
    """Copy the rest of one message's body from `source` to `sink`, after `pending` (its head,
    framed by `sink`'s codec already); `last`: the message we send ends the connection.

    What one read yields goes out in one write: a small message is a single send, a large one a
    write per read, so memory stays bounded by one read."""
    events = source.events
    codec = sink.codec
    while True:
        if not events:
            await sink.send(pending)
            pending = b""
            await source.receive()
            continue
        event = events.popleft()
        if isinstance(event, bytes):
            pending += codec.send_data(event)
        elif event is END:
            await sink.send(pending + codec.send_end(last=last))
            return
        else:
            raise source.unexpected(event)


def _expects_continue(request: Head) -> bool:
    return request.version == b"1.1" and request.header(b"expect").lower() == b"100-continue"


async def _request_and_answer(
    client: Channel, upstream: UpstreamConnection, request: Head, head: bytes
) -> Head:
    """Send the request (head, then the client's body if it has one) and read the response head.
    The upstream's `our_state` says whether all of it went out before the answer came."""
    channel = upstream.channel
    codec = channel.codec
    if not request.has_body:
        await channel.send(
            codec.send_request(request.method, head, Framing.NONE) + codec.send_end()
        )
        return await _response_head(channel)
    framing = Framing.CHUNKED if request.chunked else Framing.LENGTH
    length = request.header(b"content-length")
    declared = int(length) if framing is Framing.LENGTH and length.isdigit() else None
    head = codec.send_request(request.method, head, framing, declared)
    if _expects_continue(request) and not client.events:
        await channel.send(head)
        head = b""
        await client.send(CONTINUE)  # informational: no state moves
    return await _body_while_awaiting_answer(client, channel, head)


async def _body_while_awaiting_answer(client: Channel, upstream: Channel, head: bytes) -> Head:
    """Stream the body upstream (after `head`, unless it went already) in a task of its own
    while the answer is awaited, so an upstream that answers early (a 413 before reading a body
    over its limit) is heard at once: the rest of the body is not sent, and neither connection
    carries another request (the upstream's `our_state` never gets back to IDLE)."""
    failure: PeerClosed | None = None
    response: Head | None = None

    async def send_body(done: trio.CancelScope) -> None:
        nonlocal failure
        try:
            await relay(client, upstream, head)
        except UpstreamGone:
            pass  # the upstream stopped reading: its answer, or its end, comes from the reader
        except ClientGone as error:
            failure = error
            done.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_body, nursery.cancel_scope)
        try:
            response = await _response_head(upstream)
        except UpstreamGone as error:
            failure = failure or error
        nursery.cancel_scope.cancel()
    if response is None or failure is not None:
        raise failure or UpstreamGone("the exchange ended without an answer")
    return response


async def _response_head(upstream: Channel) -> Head:
    """The final response head (or a 101); 100 Continue and friends stay between us and the
    upstream. (The answer to a HEAD request has no body: the codec knows the request.)"""
    events = upstream.events
    while True:
        while not events:  # (`next_event`, without a coroutine per response)
            await upstream.receive()
        event = events.popleft()
        if isinstance(event, Head):
            if event.status >= 200 or event.status == 101:
                return event
        elif event is not END:  # the END of an informational response is skipped too
            raise UpstreamGone("the upstream sent a body before its response")


async def _exchange(
    exchange: Exchange, destination: Destination
) -> tuple[UpstreamConnection, Head]:
    """Send the request and wait for the response head, within the request timeout."""
    request, downstream = exchange.request, exchange.downstream
    head = head_bytes(
        request_line(request.method, destination.origin.target(request.target)),
        upstream_request_headers(
            exchange.received,
            destination.rewrite,
            exchange.client,
            upgrade=request.upgrade,
            identity=exchange.identity,
        ),
    )
    if not request.has_body:
        events = downstream.events  # its END came with the head, almost always
        if (events.popleft() if events else await downstream.next_event()) is not END:
            raise ClientGone("a request without a body sent one")
    timeout = destination.request_timeout
    answer_by = exchange.answer_by
    exchange.answer_within = timeout
    answer_by.start(timeout)  # when it fires, the connection (the stream) answers
    try:
        answered = await _ask(exchange, destination.origin, head)
    finally:
        answer_by.stop()
    if answer_by.scope.cancel_called:  # the deadline passed as the answer came: late all the same
        await trio.aclose_forcefully(answered[0].stream)
        await trio.lowlevel.checkpoint()  # raises Cancelled: the connection (stream) answers 504
    return answered


def timed_out(timeout: float) -> str:
    """The 504's detail."""
    return f"the upstream did not answer within {timeout:g}s"


async def _ask(exchange: Exchange, origin: Origin, head: bytes) -> tuple[UpstreamConnection, Head]:
    """A connection to `origin`, the request on it, and the answer's head (within the request
    timeout, which the caller set)."""
    request, downstream, pool = exchange.request, exchange.downstream, exchange.pool
    has_body = request.has_body
    try:
        # a bodiless request is retried on a fresh connection if a pooled one was closed
        upstream = (None if has_body else pool.idle(origin)) or await pool.acquire(
            origin, unless_dropped=has_body
        )
    except UpstreamUnavailable as error:
        raise _NoResponse(502, "bad_gateway", str(error)) from error
    try:
        return upstream, await _request_and_answer(downstream, upstream, request, head)
    except UpstreamGone as error:
        await trio.aclose_forcefully(upstream.stream)
        if upstream.reused and not has_body:
            fresh = await pool.connect_fresh(origin)
            return fresh, await _request_and_answer(downstream, fresh, request, head)
        raise _NoResponse(502, "bad_gateway", f"the upstream failed: {error}") from error
    except BaseException:
        await trio.aclose_forcefully(upstream.stream)
        raise


async def open_upstream(
    exchange: Exchange, destination: Destination
) -> tuple[UpstreamConnection, Head] | Reply:
    """Send the request to `destination` and wait for its response head: the upstream
    connection and the head, else the gateway's own answer (502, 504). The exchange's log entry
    learns the upstream, the status and the kind of exchange. (HTTP/1.1 and HTTP/2 both start
    here; what follows the head is framed by each.)"""
    entry = exchange.entry
    if entry is not None:
        entry.upstream, entry.route_id = destination.upstream, destination.route_id
    try:
        upstream, response = await _exchange(exchange, destination)
        if response.status == 101 and not _switch_allowed(exchange, response):
            await trio.aclose_forcefully(upstream.stream)
            raise _NoResponse(502, "bad_gateway", "the upstream's 101 accepted no WebSocket")
    except (_NoResponse, UpstreamUnavailable, UpstreamGone) as failure:
        status, error, detail = (
            (failure.status, failure.error, failure.detail)
            if isinstance(failure, _NoResponse)
            else (502, "bad_gateway", str(failure))
        )
        if entry is not None:
            entry.status, entry.reason = status, error
        return error_reply(status, error, detail)
    if entry is not None:
        entry.status = response.status
        if response.status == 101:
            entry.kind = "websocket"
        elif entry.sniff and response.header(b"content-type").startswith(b"text/event-stream"):
            entry.kind = "sse"
    return upstream, response


async def forward(exchange: Exchange, destination: Destination) -> bool:
    """Proxy one request to `destination`. Returns whether the client connection can carry
    another request: never once the exchange's `draining` is set, and then the response says
    `Connection: close` if its head has not gone out yet. The exchange's log entry learns the
    upstream, the status and the kind of exchange."""
    opened = await open_upstream(exchange, destination)
    if isinstance(opened, Reply):
        await exchange.downstream.send_reply(opened, close=True, head=exchange.head_request)
        return False
    upstream, response = opened
    try:
        if response.status == 101:
            await switch_protocols(
                exchange.downstream,
                upstream,
                response,
                destination.response,
                destination.websocket_idle_timeout,
            )
            return False
        keep_alive = await _stream_response(exchange, upstream, response, destination.response)
    except BaseException:
        await trio.aclose_forcefully(upstream.stream)
        raise
    if not exchange.pool.keep(upstream):
        await trio.aclose_forcefully(upstream.stream)
    return keep_alive


def _switch_allowed(exchange: Exchange, response: Head) -> bool:
    """Only a WebSocket the client asked for becomes a splice (`websocket_accepted`)."""
    return exchange.request.upgrade and websocket_accepted(exchange.received, response.headers)


def _client_framing(request: Head, response: Head) -> Framing:
    """How the body we send the client is delimited."""
    if request.method == b"HEAD" or not response.has_body:
        return Framing.NONE
    if response.close_delimited or response.chunked:
        return Framing.CHUNKED if request.version == b"1.1" else Framing.CLOSE
    return Framing.LENGTH


async def _stream_response(
    exchange: Exchange, upstream: UpstreamConnection, response: Head, rewrite: ResponseRewrite
) -> bool:
    """Relay the response; returns whether the client connection stays open."""
    request, downstream, draining = exchange.request, exchange.downstream, exchange.draining
    framing = _client_framing(request, response)
    headers = client_response_headers(response.headers, rewrite, switching=False)
    if framing is Framing.CLOSE:
        headers = [(name, value) for name, value in headers if name != b"transfer-encoding"]
    elif framing is Framing.CHUNKED and response.close_delimited:
        headers.append((b"transfer-encoding", b"chunked"))
    keep_alive = (
        request.keep_alive
        and upstream.channel.codec.our_state is _IDLE  # else the client's body is unread
        and framing is not Framing.CLOSE
        and downstream.codec.their_state is not _SWITCHED
        and not (draining is not None and draining.is_set())
    )
    if not keep_alive:
        headers.append((b"connection", b"close"))
    head = head_bytes(status_line(response.status, response.reason), headers)
    head = downstream.codec.send_response(head, framing)
    await relay(upstream.channel, downstream, head, last=not keep_alive)
    return keep_alive
