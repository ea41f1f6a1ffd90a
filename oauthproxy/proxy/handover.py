"""Moving a connection to the instance its request names, and answering on it without forwarding:
shared by the dispatcher (a connection's first request) and the instances (the next ones)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from oauthproxy.logs.logger import RequestLogger
from oauthproxy.proxy.codec import END, Head
from oauthproxy.proxy.headers import Client
from oauthproxy.proxy.http import BadRequest, Channel, PeerClosed
from oauthproxy.proxy.request import RequestView
from oauthproxy.proxy.request_log import refused
from oauthproxy.proxy.responses import Reply, Unserved, error_reply, unknown_host
from oauthproxy.proxy.tls import covers


class Serving(Protocol):
    """A connection an instance has taken, to be served in the task that handed it over (see
    `carry`)."""

    def __call__(self) -> Awaitable[Serving | None]:
        """Serve the connection until it closes (None), or until a request names a hostname
        whose instance takes it over: then that instance's serving, to run next."""


class Adopter(Protocol):
    """An instance, as far as handing it a connection goes."""

    def adopt(
        self,
        channel: Channel,
        first: Head,
        view: RequestView,
        client: Client,
        lookup: Lookup,
        scope: trio.CancelScope,
    ) -> Serving | None: ...


Lookup = Callable[[str], Adopter | Unserved | None]
"""The supervisor's hostname → instance table, as a function; for a proxy that exists but has
no instance (disabled, or HTTPS-only without a certificate yet), why not."""


async def pass_connection(
    channel: Channel,
    request: Head,
    view: RequestView,
    client: Client,
    lookup: Lookup,
    scope: trio.CancelScope,
    requests: RequestLogger | None = None,
) -> Serving | None:
    """Give the connection to the instance for `view.host`: its serving, which the caller
    runs (`carry`) within `scope`, the connection's one cancel scope, which the caller's task
    has entered for all of the connection's life (see `carry`). When none may take it, answer
    (421: the TLS certificate does not cover that host; 404: no such proxy, or why the proxy is
    not served; all logged to `requests`) and return None: the caller closes the connection."""
    head = request.method == b"HEAD"
    reply = misdirected(client, view.host, request)
    if reply is not None:
        await channel.send_reply(reply, close=True, head=head)
        refused(requests, client, reply, request, view.host)
        return None
    found = lookup(view.host)
    if isinstance(found, Unserved):
        reply = found.reply(request.header(b"accept"))
    elif found is not None and (
        serving := found.adopt(channel, request, view, client, lookup, scope)
    ):
        return serving
    else:
        reply = unknown_host(view.host, request.header(b"accept"))
    await channel.send_reply(reply, close=True, head=head)
    refused(requests, client, reply, request, view.host)
    return None


async def carry(serving: Serving) -> None:
    """Serve a handed-over connection in this task until it closes, instance after instance
    as its requests move between hostnames (a loop: a connection may move without end).

    The task is its dispatcher's, but while an instance serves the connection the instance
    owns it: it is registered there with the connection's cancel scope, which the instance's
    stop, drain and idle sweep cancel, and the instance ends only once it has closed (or moved
    on). So one task per connection, not one to read its first request and another to serve
    it; and one cancel scope, entered by the dispatcher around the connection's whole life
    (its TLS handshake's and first request's deadlines, then every instance's timeouts), not
    one more per instance."""
    next_serving: Serving | None = serving
    while next_serving is not None:
        next_serving = await next_serving()


def misdirected(client: Client, host: str, request: Head) -> Reply | None:
    """The 421 for a host the TLS connection's certificate does not cover (None: it may ask
    for it). HTTP/1.1 connections and HTTP/2 streams both ask here. (The request's Accept
    header, which picks the reply's format, is looked up only for a reply.)"""
    if client.scheme == b"https" and not covers(client.tls_names, host):
        detail = f"this connection's certificate does not cover {host!r}; open a new one"
        return error_reply(421, "misdirected_request", detail, accept=request.header(b"accept"))
    return None


async def answer(channel: Channel, request: Head, reply: Reply) -> bool:
    """Answer without forwarding. Returns whether the connection can carry another request:
    not when the request has a body we did not read, nor when either side said close."""
    head = request.method == b"HEAD"
    if request.has_body or not request.keep_alive:
        await channel.send_reply(reply, close=True, head=head)
        return False
    if await channel.next_event() is not END:
        raise BadRequest("a request without a body sent one")
    await channel.send_reply(reply, head=head)
    return True


def refusal(error: BadRequest) -> Reply:
    """The 400 (or 431) for what could not be parsed."""
    reason = "request_header_fields_too_large" if error.status == 431 else "bad_request"
    return error_reply(error.status, reason, str(error))


async def refuse(channel: Channel, error: BadRequest) -> None:
    """Answer what could not be parsed; the connection closes after it."""
    if not channel.can_reply:  # a response of ours is under way: the connection just closes
        return
    with trio.move_on_after(1), contextlib.suppress(PeerClosed):
        await channel.send_reply(refusal(error), close=True)
