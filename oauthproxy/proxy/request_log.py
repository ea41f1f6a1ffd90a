"""The data plane's side of the request log: open an entry when a request arrives, note what
answered it, hand it to the logger when the exchange ends.

Kept to attribute stores and one list append (see `oauthproxy.logs.logger`): an entry costs a
few microseconds and never waits. Byte counts come from the connection's socket counters
(`LeanSocketStream.received/sent`), read at both ends of the exchange.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import trio

from oauthproxy.logs.logger import RequestLogger
from oauthproxy.logs.records import RequestEntry, begin
from oauthproxy.proxy.codec import Head
from oauthproxy.proxy.headers import Client
from oauthproxy.proxy.http import Channel
from oauthproxy.proxy.responses import Reply
from oauthproxy.proxy.sockets import LeanSocketStream
from oauthproxy.proxy.tls_stream import ServerTLSStream


@dataclass(slots=True)
class Counted:
    """A connection's socket counters where its last logged exchange ended, the socket they
    are read from and its TLS version (found once per connection: its stream layers and its
    TLS version never change)."""

    received: int = 0
    sent: int = 0
    socket: LeanSocketStream | None = None
    looked: bool = False
    tls: str | None = None
    """The connection's TLS version ("" without TLS); None until its first HTTPS request."""


def socket_of(stream: trio.abc.Stream) -> LeanSocketStream | None:
    """The socket under a connection's stream layers (TLS, a PROXY protocol prefix). (By
    exact type, as `tls_version`: `isinstance` against trio's abstract stream classes costs
    several times as much, once per connection.)"""
    layer: object = stream
    for _layer in range(4):
        if type(layer) is LeanSocketStream:
            return layer
        layer = getattr(layer, "transport_stream", None) or getattr(layer, "transport", None)
        if layer is None:
            return None
    return None


def tls_version(stream: trio.abc.Stream) -> str:
    return stream.version() or "" if type(stream) is ServerTLSStream else ""


def open_entry(
    reader: Channel,
    request: Head,
    client: Client,
    host: str,
    counted: Counted,
    logger: RequestLogger,
) -> RequestEntry:
    """The entry of a request whose head just arrived. Bytes count from where the previous
    exchange on the connection ended (`counted`), so this request's head counts as its own."""
    entry = begin(client.ip, client.scheme, host, request.method, request.target)
    entry.version = request.version
    if not logger.shows_kind:
        entry.sniff = False
    if client.scheme == b"https":
        if counted.tls is None:
            counted.tls = tls_version(reader.stream)
        entry.tls_version = counted.tls
    entry.bytes_in, entry.bytes_out = -counted.received, -counted.sent
    return entry


def close_entry(
    entry: RequestEntry, reader: Channel, logger: RequestLogger, counted: Counted
) -> None:
    """Log the ended exchange, and mark where the next one's bytes start."""
    entry.duration = time.perf_counter() - entry.clock
    if not counted.looked:
        counted.socket, counted.looked = socket_of(reader.stream), True
    socket = counted.socket
    if socket is not None:
        counted.received, counted.sent = socket.received, socket.sent
    entry.bytes_in += counted.received
    entry.bytes_out += counted.sent
    logger.record(entry)


def noted(entry: RequestEntry | None, reply: Reply) -> Reply:
    """`reply`, after noting on `entry` that the gateway answered with it."""
    if entry is not None:
        entry.status = reply.status
        entry.reason = reply.error or "gateway"
    return reply


def refused(
    logger: RequestLogger | None,
    client: Client,
    reply: Reply,
    request: Head | None,
    host: str = "",
    *,
    version: bytes = b"",
) -> None:
    """Log an answer given before any instance took the request (unknown host, bad request,
    an ACME challenge). `version`: the HTTP version of a request whose head could not be read,
    when the connection tells it (HTTP/2)."""
    if logger is None or not logger.active:
        return
    method, target = (request.method, request.target) if request else (b"-", b"-")
    entry = begin(client.ip, client.scheme, host, method, target)
    entry.version = request.version if request else version
    noted(entry, reply)
    entry.duration = time.perf_counter() - entry.clock
    logger.record(entry)
