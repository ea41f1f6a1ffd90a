"""One HTTP/2 stream's request: routed, checked and forwarded by the rules HTTP/1.1 requests
follow (`view_of`, `handover.misdirected`, `Instance.route`, `forward.open_upstream`, the
header rewrites), then answered as HTTP/2. Nothing here decides anything of its own: a rule
that changes for HTTP/1.1 changes for HTTP/2 with it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

import trio

from oauthproxy.logs.logger import RequestLogger
from oauthproxy.proxy.codec import END, Head
from oauthproxy.proxy.exchange import Exchange
from oauthproxy.proxy.forward import Destination, open_upstream, timed_out
from oauthproxy.proxy.framing import Headers
from oauthproxy.proxy.handover import misdirected, refusal
from oauthproxy.proxy.headers import Client, client_response_headers
from oauthproxy.proxy.http import BadRequest, PeerClosed, UpstreamGone
from oauthproxy.proxy.http2.messages import VERSION, request_head
from oauthproxy.proxy.http2.stream import StreamChannel
from oauthproxy.proxy.instance import Instance
from oauthproxy.proxy.request import RequestView, view_of
from oauthproxy.proxy.request_log import Counted, noted, open_entry, refused
from oauthproxy.proxy.responses import Reply, Unserved, error_reply, unknown_host

if TYPE_CHECKING:
    from oauthproxy.proxy.dispatcher import Front

log = logging.getLogger(__name__)


async def serve_stream(
    stream: StreamChannel, fields: Headers, bodiless: bool, client: Client, front: Front
) -> None:
    """Answer one stream (`bodiless`: its header block ended it): the gateway's own reply, or
    the upstream's response relayed. A stream that fails mid-response is reset; the
    connection and its other streams go on."""
    requests = front.requests if front.requests is not None and front.requests.active else None
    request: Head | None = None
    try:
        request = request_head(fields, ended=bodiless)
        view = view_of(request, client.scheme)
        reply = misdirected(client, view.host, request)
        found = front.lookup(view.host) if reply is None else None
        if isinstance(found, Instance):
            with found.serving(stream):
                await _exchange(stream, request, view, client, found, requests)
            return
        if reply is None:
            accept = request.header(b"accept")
            reply = (
                found.reply(accept)
                if isinstance(found, Unserved)
                else unknown_host(view.host, accept)
            )
        refused(requests, client, reply, request, view.host)
        await stream.send_reply(reply, head=request.method == b"HEAD")
    except BadRequest as error:  # (raised before any response: by `request_head`, `view_of`)
        reply = refusal(error)
        # without the request, as HTTP/1.1 logs what it could not parse: its target may be an
        # absolute URL with a password in it (`https://user:password@host/`)
        refused(requests, client, reply, None, version=VERSION)
        with contextlib.suppress(PeerClosed):
            await stream.send_reply(reply)
    except PeerClosed:
        stream.abort()
    except Exception:
        log.exception("an HTTP/2 stream failed")
        stream.abort()


async def _exchange(
    stream: StreamChannel,
    request: Head,
    view: RequestView,
    client: Client,
    instance: Instance,
    requests: RequestLogger | None,
) -> None:
    entry = None
    if requests is not None:
        entry = open_entry(stream, request, client, instance.hostname, Counted(), requests)
    stream.answer_by = answer_by = instance.answer_timer(stream.scope)
    exchange = Exchange(
        stream, request, view, client, instance.pool, view.headers, answer_by, (), entry
    )
    try:
        routed = await instance.route(exchange)
        if isinstance(routed, Destination):
            await _forward(stream, exchange, routed)
        else:
            await stream.send_reply(routed[0], head=exchange.head_request)
    except BaseException:
        if answer_by.scope.cancel_called and not (stream.reset or stream.responded):
            # the upstream did not answer in time: the stream answers 504 once this task's
            # scope has caught the cancellation (`Http2Connection`)
            reply = error_reply(504, "gateway_timeout", timed_out(exchange.answer_within))
            stream.late = noted(entry, reply), exchange.head_request
        raise
    finally:
        if entry is not None and requests is not None:
            entry.duration = time.perf_counter() - entry.clock
            entry.bytes_in = stream.bytes_in + sum(len(n) + len(v) for n, v in request.headers)
            entry.bytes_out = stream.bytes_out
            requests.record(entry)


async def _forward(stream: StreamChannel, exchange: Exchange, destination: Destination) -> None:
    """Forward to the instance's HTTP/1.1 pool and relay the response, piece by piece."""
    request = exchange.request
    if request.has_body and request.header(b"expect").lower() == b"100-continue":
        await stream.informational(100)
    opened = await open_upstream(exchange, destination)
    if isinstance(opened, Reply):
        await stream.send_reply(opened, head=exchange.head_request)
        return
    upstream, response = opened
    try:
        if response.status == 101:
            raise UpstreamGone("the upstream switched protocols, which HTTP/2 cannot carry")
        headers = client_response_headers(response.headers, destination.response, switching=False)
        bodiless = exchange.head_request or not response.has_body
        stream.respond(response.status, headers, end=bodiless)
        channel = upstream.channel
        events = channel.events
        while True:  # to the END: a HEAD's or 204's too, so the connection can be pooled
            if not events:
                await stream.flush()  # what one upstream read brought goes out before the next
                await channel.receive()
                continue
            event = events.popleft()
            if event is END:
                break
            if not isinstance(event, bytes):
                raise channel.unexpected(event)
            if event and not bodiless:
                await stream.send_body(event, end=bool(events) and events[0] is END)
        if not stream.responded:
            stream.end()
        await stream.flush()
    except BaseException:
        await trio.aclose_forcefully(upstream.stream)
        raise
    if not exchange.pool.keep(upstream):
        await trio.aclose_forcefully(upstream.stream)
