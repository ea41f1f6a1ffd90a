"""Forward one request upstream and stream the response back, both bodies chunk by chunk.

Memory per request is bounded by one read (64 KiB) in each direction: we never read a body whole.
A WebSocket upgrade answered with an accepting 101 becomes a byte splice in both directions.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio

from oauthproxy.logs.records import RequestEntry
from oauthproxy.proxy.codec import END, Codec, Event, Head, State
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
_NO_BODY, _LENGTH, _CHUNKED, _CLOSE = Framing.NONE, Framing.LENGTH, Framing.CHUNKED, Framing.CLOSE
"""(An enum's class attributes cost a lookup each: the hot path reads these.)"""

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
"""The methods a request may be sent again with when its connection failed before an answer
(RFC 9110 §9.2.2): the backend may have acted on it already, and a second POST acts twice."""


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
    codec = sink.codec
    while True:
        data, ended = framed_queue(source, codec, pending, last)
        if rest := sink.send_at_once(data):
            await sink.send(rest)
        if ended:
            return
        pending = b""
        await source.receive()


def framed_queue(source: Channel, codec: Codec, pending: bytes, last: bool) -> tuple[bytes, bool]:
    """`pending`, then the body `source` has parsed already, framed by `codec` (the sink's),
    and whether the message's end was in it (then `codec` has ended it: `last`, the message
    ends the connection). A body that came whole goes out without a coroutine (`forward`)."""
    events = source.events
    while events:
        event = events.popleft()
        if isinstance(event, bytes):
            pending += codec.send_data(event)
        elif event is END:
            return pending + codec.send_end(last=last), True
        else:
            raise source.unexpected(event)
    return pending, False


def _expects_continue(request: Head) -> bool:
    return request.version == b"1.1" and request.header(b"expect").lower() == b"100-continue"


async def _send_with_body(
    client: Channel, upstream: UpstreamConnection, request: Head, head: bytes
) -> Head:
    """Send a request that has a body (its head, then the client's body) and read the response
    head. The upstream's `our_state` says whether all of it went out before the answer came."""
    channel = upstream.channel
    codec = channel.codec
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


def _final_head(events: deque[Event]) -> Head | None:
    """The final response head (or a 101) among the upstream's parsed events, or None: more
    must be read first. 100 Continue and friends stay between us and the upstream. (The answer
    to a HEAD request has no body: the codec knows the request.)"""
    while events:
        event = events.popleft()
        if isinstance(event, Head):
            if event.status >= 200 or event.status == 101:
                return event
        elif event is not END:  # the END of an informational response is skipped too
            raise UpstreamGone("the upstream sent a body before its response")
    return None


async def _response_head(upstream: Channel) -> Head:
    """The final response head, read as it comes (`_final_head`)."""
    events = upstream.events
    while (response := _final_head(events)) is None:
        await upstream.receive()
    return response


def timed_out(timeout: float) -> str:
    """The 504's detail."""
    return f"the upstream did not answer within {timeout:g}s"


async def open_upstream(
    exchange: Exchange, destination: Destination
) -> tuple[UpstreamConnection, Head] | Reply:
    """Send the request to `destination` and wait for its response head, within the request
    timeout: the upstream connection and the head, else the gateway's own answer (502; a 504
    comes from the connection or stream whose deadline fired). The exchange's log entry learns
    the upstream, the status and the kind of exchange. (HTTP/1.1 and HTTP/2 both start here;
    what follows the head is framed by each.)

    A request goes out on a pooled connection when one is idle and quiet (`UpstreamPool.idle`);
    an idempotent one without a body goes out again on a fresh connection if that one turns
    out closed (the upstream closed it just as it was taken); any other is never sent twice.

    The common exchange (a GET, a pooled connection) runs in this coroutine alone: each level
    of coroutines between the connection's task and the read it waits in is paid again at
    every resumption (the four levels this replaced cost ~5 % of the gateway's CPU per proxied
    request: `benchmarks/cpu_per_request.py`)."""
    request, downstream, pool, entry = (
        exchange.request,
        exchange.downstream,
        exchange.pool,
        exchange.entry,
    )
    if entry is not None:
        entry.upstream, entry.route_id = destination.upstream, destination.route_id
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
    has_body = request.has_body
    if not has_body:
        events = downstream.events  # its END came with the head, almost always
        if (events.popleft() if events else await downstream.next_event()) is not END:
            raise ClientGone("a request without a body sent one")
    origin, timeout, answer_by = destination.origin, destination.request_timeout, exchange.answer_by
    exchange.answer_within = timeout
    answer_by.start(timeout)  # when it fires, the connection (the stream) answers
    try:
        upstream = pool.idle(origin) or await pool.connect_fresh(origin)
        while True:
            try:
                if has_body:
                    response = await _send_with_body(downstream, upstream, request, head)
                else:
                    channel = upstream.channel
                    codec = channel.codec
                    framed = codec.send_request(request.method, head, _NO_BODY)
                    if rest := channel.send_at_once(framed + codec.send_end()):
                        await channel.send(rest)
                    answers = channel.events
                    while True:
                        while not answers:  # (`_response_head`, without a coroutine)
                            await channel.receive()
                        if (answer := _final_head(answers)) is not None:
                            break
                    response = answer
                break
            except UpstreamGone as error:
                await trio.aclose_forcefully(upstream.stream)
                if has_body or request.method not in IDEMPOTENT or not upstream.reused:
                    raise _NoResponse(
                        502, "bad_gateway", f"the upstream failed: {error}"
                    ) from error
                upstream = await pool.connect_fresh(origin)  # it closed while pooled
            except BaseException:
                await trio.aclose_forcefully(upstream.stream)
                raise
    except (_NoResponse, UpstreamUnavailable) as failure:
        return _failed(entry, failure)
    finally:
        late = answer_by.stop()
    if late:  # the deadline passed as the answer came
        await trio.aclose_forcefully(upstream.stream)
        await trio.lowlevel.checkpoint()  # raises Cancelled: the connection (stream) answers 504
    if response.status == 101 and not _switch_allowed(exchange, response):
        await trio.aclose_forcefully(upstream.stream)
        return _failed(
            entry, _NoResponse(502, "bad_gateway", "the upstream's 101 accepted no WebSocket")
        )
    if entry is not None:
        entry.status = response.status
        if response.status == 101:
            entry.kind = "websocket"
        elif entry.sniff and response.header(b"content-type").startswith(b"text/event-stream"):
            entry.kind = "sse"
    return upstream, response


def _failed(entry: RequestEntry | None, failure: _NoResponse | UpstreamUnavailable) -> Reply:
    """The gateway's answer when the upstream gave none, noted on the log entry."""
    status, error, detail = (
        (failure.status, failure.error, failure.detail)
        if isinstance(failure, _NoResponse)
        else (502, "bad_gateway", str(failure))
    )
    if entry is not None:
        entry.status, entry.reason = status, error
    return error_reply(status, error, detail)


async def forward(
    exchange: Exchange,
    destination: Destination,
    opened: tuple[UpstreamConnection, Head] | Reply,
) -> bool:
    """Send the client what `open_upstream` opened (its answer, or ours) and return whether
    the client connection can carry another request: never once the exchange's `draining` is
    set, and then the response says `Connection: close` if its head has not gone out yet.
    (Called after `open_upstream` rather than around it, so that the read that awaits the
    upstream's answer is one coroutine nearer the connection's task.)"""
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
        head, keep_alive = _client_head(exchange, upstream, response, destination.response)
        downstream = exchange.downstream
        data, ended = framed_queue(upstream.channel, downstream.codec, head, not keep_alive)
        if not ended:  # the rest of the body is still to come
            await relay(upstream.channel, downstream, data, last=not keep_alive)
        elif rest := downstream.send_at_once(data):
            await downstream.send(rest)
    except BaseException:
        await trio.aclose_forcefully(upstream.stream)
        raise
    if not exchange.pool.keep(upstream):
        await trio.aclose_forcefully(upstream.stream)
    return keep_alive


def _switch_allowed(exchange: Exchange, response: Head) -> bool:
    """Only a WebSocket the client asked for becomes a splice (`websocket_accepted`)."""
    return exchange.request.upgrade and websocket_accepted(exchange.received, response.headers)


def _client_head(
    exchange: Exchange, upstream: UpstreamConnection, response: Head, rewrite: ResponseRewrite
) -> tuple[bytes, bool]:
    """The response head the client gets (framed by its codec: the body follows), and whether
    the client connection stays open after it."""
    request, downstream, draining = exchange.request, exchange.downstream, exchange.draining
    # how the body we send the client is delimited
    if request.method == b"HEAD" or not response.has_body:
        framing = _NO_BODY
    elif response.close_delimited or response.chunked:
        framing = _CHUNKED if request.version == b"1.1" else _CLOSE
    else:
        framing = _LENGTH
    headers = client_response_headers(response.headers, rewrite, switching=False)
    if framing is _CLOSE:
        headers = [(name, value) for name, value in headers if name != b"transfer-encoding"]
    elif framing is _CHUNKED and response.close_delimited:
        headers.append((b"transfer-encoding", b"chunked"))
    keep_alive = (
        request.keep_alive
        and upstream.channel.codec.our_state is _IDLE  # else the client's body is unread
        and framing is not _CLOSE
        and downstream.codec.their_state is not _SWITCHED
        and not (draining is not None and draining.is_set())
    )
    if not keep_alive:
        headers.append((b"connection", b"close"))
    head = head_bytes(status_line(response.status, response.reason), headers)
    return downstream.codec.send_response(head, framing), keep_alive
