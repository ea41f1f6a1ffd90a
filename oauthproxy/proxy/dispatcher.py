"""The public HTTP listener: read a connection's first request, hand it to its hostname's instance.

No TCP relay and no port per hostname: the connection itself moves to the instance, which owns
it from then on while this task serves it (see `instance`'s docstring). An unknown hostname gets
a clear 404 here.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

import trio

from oauthproxy.logs.logger import RequestLogger
from oauthproxy.proxy.challenges import ChallengeLookup, challenge_reply, is_challenge
from oauthproxy.proxy.codec import Head
from oauthproxy.proxy.exchange import AnswerTimer
from oauthproxy.proxy.handover import Serving, answer, carry, pass_connection, refusal, refuse
from oauthproxy.proxy.headers import Client, Network, is_trusted
from oauthproxy.proxy.http import BadRequest, Channel, PeerClosed, close_gently
from oauthproxy.proxy.http2.connection import serve_http2
from oauthproxy.proxy.http2.limits import Http2Limits
from oauthproxy.proxy.instance import Instance
from oauthproxy.proxy.limits import ConnectionLimit
from oauthproxy.proxy.proxy_protocol import PrefixedStream, ProxyHeaderError, read_header
from oauthproxy.proxy.request import view_of
from oauthproxy.proxy.request_log import refused
from oauthproxy.proxy.responses import Unserved
from oauthproxy.proxy.sockets import LeanSocketStream
from oauthproxy.proxy.tls import TLS_HANDSHAKE_TIMEOUT, HostContext, listener_context
from oauthproxy.proxy.tls_stream import ServerTLSStream
from oauthproxy.proxy.waiting import FirstRequests, HandOverDeadlines

log = logging.getLogger(__name__)

PROXY_PROTOCOL_TIMEOUT = 5.0
"""A load balancer sends the PROXY header, and the client its first byte, within this time."""

FIRST_REQUEST_TIMEOUT = 30.0
"""A connection that sends no complete request head in this time is closed (slowloris); the
gateway passes `PROXY_FIRST_REQUEST_TIMEOUT` through `Front`."""

_ACCEPT_BACKOFF = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ACCEPT_IGNORED = {
    getattr(errno, name)
    for name in (
        *("EPERM", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET"),
        *("EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "ENOSR", "ESOCKTNOSUPPORT"),
        *("EPROTONOSUPPORT", "ETIMEDOUT", "ECONNRESET"),
    )
    if hasattr(errno, name)
}
"""What a connection can die of between the kernel's queue and `accept` (as trio ignores)."""


def client_of(stream: LeanSocketStream, trusted: Sequence[Network], scheme: bytes) -> Client:
    peer = stream.peer_ip()
    return Client(ip=peer, trusted=is_trusted(peer, trusted), scheme=scheme)


async def hand_over(
    stream: trio.abc.Stream,
    front: Front,
    client: Client,
    deadlines: HandOverDeadlines,
    timer: AnswerTimer | None = None,
) -> None:
    """Read the first request and give the connection to its instance (or answer it here),
    then serve it in this task for the instances it moves through (`carry`). A connection that
    has sent nothing when the gateway begins to shut down is closed.

    All within the connection's one cancel scope: `timer`'s when the caller has entered one
    (the TLS handshake's deadline, restarted here), else one of its own. Until the connection
    is handed over, the scope's deadline is the first request's (kept by `deadlines`); then
    the instances' timeouts."""
    if timer is None:
        with trio.CancelScope() as own:
            timer = deadlines.start(own, front.first_request_timeout)
            await _hand_over(stream, front, client, deadlines, timer)
    else:
        timer.start(front.first_request_timeout)  # (the handshake's deadline no more)
        await _hand_over(stream, front, client, deadlines, timer)


async def _hand_over(
    stream: trio.abc.Stream,
    front: Front,
    client: Client,
    deadlines: HandOverDeadlines,
    timer: AnswerTimer,
) -> None:
    reader = Channel.of_client(stream)
    serving: Serving | None = None
    try:
        try:
            serving = await _first_request(reader, front, client, timer.scope)
        finally:  # the instance's timeouts from here (a refusal and the close bound their own)
            deadlines.end(timer)
    except BadRequest as error:
        refused(front.requests, client, refusal(error), None)
        await refuse(reader, error)
    except PeerClosed:
        pass
    finally:
        if serving is None:
            await close_gently(stream)
    if serving is not None:
        await carry(serving)


async def _first_request(
    reader: Channel, front: Front, client: Client, scope: trio.CancelScope
) -> Serving | None:
    """`hand_over` within the first request's deadline (`scope`); the serving of the instance
    that took the connection, if one did."""
    first_requests = front.first_requests
    first_requests.begin()
    try:
        await first_requests.first_bytes(reader, scope)
        first = await reader.next_event()
        if not isinstance(first, Head):
            return None
        if is_challenge(first.target):
            reply = await challenge_reply(first.target, front.challenges)
            refused(front.requests, client, reply, first)
            await answer(reader, first, reply)
            return None
        view = view_of(first, client.scheme)
        lookup, requests = front.lookup, front.requests
        return await pass_connection(reader, first, view, client, lookup, scope, requests)
    finally:
        first_requests.end()


Handler = Callable[[LeanSocketStream], Awaitable[None]]


ACCEPT_BATCH = 64
"""Connections taken from the backlog per wake-up of the accept loop before it yields."""


async def serve_listener(
    listener: trio.SocketListener,
    handle: Handler,
    connections: trio.Nursery,
    send_timeout: float = math.inf,
) -> None:
    """Accept connections until cancelled; each gets a `handle` task in `connections` (which
    outlives the accepting), and `send_timeout` for every send toward it.

    One wait for the listening socket, then every connection the backlog holds (up to
    `ACCEPT_BATCH`): trio's `accept()` would yield to the scheduler after each connection, and
    try a failing `accept` before each wait."""
    listening = listener.socket
    raw = listening._sock  # type: ignore[attr-defined]  # trio's private stdlib socket (pinned)
    family, kind, protocol = int(raw.family), int(raw.type), raw.proto
    for option, value in _ACCEPTED_OPTIONS:  # inherited by every accepted socket (Linux)
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, option, value)
    while True:
        await trio.lowlevel.wait_readable(listening)
        for _ in range(ACCEPT_BATCH):
            try:
                fd, address = raw._accept()  # (`accept` would look up the family and type again)
            except BlockingIOError:
                break
            except OSError as error:
                if error.errno in _ACCEPT_BACKOFF:
                    log.warning(
                        "accept failed (%s); retrying shortly", errno.errorcode[error.errno]
                    )
                    await trio.sleep(0.1)
                    break
                if error.errno in _ACCEPT_IGNORED:
                    continue
                raise
            accepted = socket.socket(family, kind, protocol, fileno=fd)
            accepted.setblocking(False)  # (no trio socket around it: see `LeanSocketStream`)
            connections.start_soon(_isolated, handle, accepted, str(address[0]), send_timeout)


_ACCEPTED_OPTIONS = ((socket.TCP_NODELAY, 1), (socket.TCP_NOTSENT_LOWAT, 2**14))
"""What trio's `SocketStream` sets on each socket it wraps, set once on the listening socket."""


async def _isolated(handle: Handler, sock: socket.socket, peer: str, send_timeout: float) -> None:
    """Run one connection's hand-over; its failure is logged and ends only that connection."""
    stream = LeanSocketStream(sock, send_timeout=send_timeout, peer=peer)
    try:
        await handle(stream)
    except Exception:
        log.exception("a connection failed before reaching its proxy")
        await trio.aclose_forcefully(stream)


def _hand_over_deadlines(front: Front) -> HandOverDeadlines:
    """A port's deadlines until hand-over, swept four times per the shorter of them."""
    return HandOverDeadlines(min(TLS_HANDSHAKE_TIMEOUT, front.first_request_timeout) / 4)


async def _serve_port(
    front: Front,
    listeners: Sequence[trio.SocketListener],
    handle: Handler,
    deadlines: HandOverDeadlines,
    task_status: trio.TaskStatus[int],
) -> None:
    """Serve listeners bound beforehand (`oauthproxy.listeners`): a taken port fails start-up
    before anything runs, not here. On `shutdown` the listening sockets close at once, in the
    scheduler pass that sees it (before the instances start to drain), so a new connection is
    refused rather than queued by the kernel and reset at exit; accepted connections that have
    sent nothing close too, and those reading their first request go on to their instance."""
    bound = int(listeners[0].socket.getsockname()[1])
    try:
        async with trio.open_nursery() as sweeping:
            sweeping.start_soon(deadlines.sweep)  # while connections may still be handed over
            async with trio.open_nursery() as connections, trio.open_nursery() as accepting:
                for listener in listeners:
                    accepting.start_soon(
                        serve_listener, listener, handle, connections, front.send_timeout
                    )
                task_status.started(bound)
                await front.shutdown.wait()
                accepting.cancel_scope.cancel()  # accepts end with Cancelled, not a closed socket
                _close(listeners)
                front.first_requests.close_all()
            sweeping.cancel_scope.cancel()
    finally:
        _close(listeners)


def _close(listeners: Sequence[trio.SocketListener]) -> None:
    for listener in listeners:
        listener.socket.close()


@dataclass(frozen=True)
class Front:
    """What the public listeners share."""

    host: str
    instances: Mapping[str, Instance]
    """The supervisor's hostname → instance table."""
    challenges: ChallengeLookup
    trusted: Sequence[Network]
    shutdown: trio.Event
    limit: ConnectionLimit = field(default_factory=lambda: ConnectionLimit(0))
    """Open connections per client, across every public listener."""
    send_timeout: float = math.inf
    """How long a send may wait for a client to take data (`PROXY_SEND_TIMEOUT`)."""

    def admit(self, stream: LeanSocketStream, ip: str, trusted: bool) -> bool:
        """Count the connection against its client's share (`ip`) until it closes; False when
        the client holds its share already (then it is closed at once, unread and unanswered).
        A peer in TRUSTED_PROXIES speaks for many clients and is not counted."""
        if trusted:
            return True
        release = self.limit.admit(ip)
        if release is None:
            return False
        stream.on_close(release)
        return True

    first_request_timeout: float = FIRST_REQUEST_TIMEOUT
    first_requests: FirstRequests = field(default_factory=FirstRequests)
    """Accepted connections until their first request reaches its instance (see `waiting`)."""
    requests: RequestLogger | None = None
    """Where answers given here (unknown host, bad request, a challenge) and failed TLS
    handshakes are logged."""
    http2: Http2Limits | None = field(default_factory=Http2Limits)
    """HTTP/2 for TLS clients that choose `h2`, with these limits; None: HTTP/1.1 only."""
    unserved: Callable[[str], Unserved | None] = lambda hostname: None
    """Why a hostname with a proxy has no instance (the supervisor's desired state)."""

    def lookup(self, hostname: str) -> Instance | Unserved | None:
        """The instance for `hostname`, else why its proxy is not served, else None."""
        instance = self.instances.get(hostname)
        return instance if instance is not None else self.unserved(hostname)


async def serve_http(
    front: Front,
    listeners: Sequence[trio.SocketListener],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The public HTTP port until `shutdown`; started with the port it really listens on.

    Connections already handed to instances belong to them and drain with them.
    """

    deadlines = _hand_over_deadlines(front)

    async def handle(stream: LeanSocketStream) -> None:
        client = client_of(stream, front.trusted, b"http")
        if not front.admit(stream, client.ip, client.trusted):
            await trio.aclose_forcefully(stream)
            return
        await hand_over(stream, front, client, deadlines)

    await _serve_port(front, listeners, handle, deadlines, task_status)


_asked_name: ContextVar[str] = ContextVar("asked_name", default="")
"""The SNI name a handshake asked for, set by the SNI callback in the handshake's own task (so
a failed handshake's event can name it)."""

_no_certificate: ContextVar[str] = ContextVar("no_certificate", default="")
"""Why the SNI callback had no certificate for that name (the client only gets the TLS alert
`unrecognized_name`; the gateway's log says why)."""


def _tls_context(front: Front) -> ssl.SSLContext:
    """The listeners' TLS context: the SNI name picks the instance's certificate."""

    def tls_for(hostname: str) -> HostContext | None:
        _asked_name.set(hostname)  # the handshake's task reads these if the handshake fails
        found = front.lookup(hostname)
        tls = found.config.tls if isinstance(found, Instance) and found.config else None
        if tls is None:
            _no_certificate.set(why_no_certificate(found))
        return tls

    return listener_context(tls_for, http2=front.http2 is not None)


def why_no_certificate(found: Instance | Unserved | None) -> str:
    """Why a name gets no certificate, for the log: no proxy, a proxy not served, or a served
    proxy that has none (HTTPS off, or its certificate not issued yet)."""
    if found is None:
        return "no proxy for this name"
    if isinstance(found, Unserved):
        return found.detail
    return "its proxy has no certificate (enable_https is off, or none is issued yet)"


def _handshake_failed(requests: RequestLogger | None, ip: str, error: Exception) -> None:
    """A failed TLS handshake as an event, with the SNI name it asked for (at DEBUG in the
    gateway's log: anyone can cause them by the thousand)."""
    if requests is None:
        return
    asked = _asked_name.get() or "-"
    timeout = isinstance(error, trio.TooSlowError)
    why = "timed out" if timeout else str(error.__cause__ or error) or "refused"
    if (no_certificate := _no_certificate.get()) and not timeout:
        why = f"refused (unrecognized_name): {no_certificate}"
    detail = f"sni={asked}: {why}"[:200]
    requests.event("tls.handshake_failed", quiet=True, status=400, client_ip=ip, detail=detail)


async def _serve_tls(
    front: Front,
    context: ssl.SSLContext,
    deadlines: HandOverDeadlines,
    transport: trio.abc.Stream,
    ip: str,
    trusted: bool,
    unnamed: bool = False,
) -> None:
    """Terminate TLS on `transport`, then hand the connection to the SNI name's instance.
    One cancel scope holds the handshake's deadline, then (restarted) the first request's, both
    kept by `deadlines`, then the instances' timeouts (`hand_over`). The connection's `Client`
    (`ip`, `trusted`, `unnamed` as its `Client` fields say) is made once the handshake tells
    what its certificate covers."""
    stream = ServerTLSStream(transport, context)
    failure: Exception | None = None
    shaken = False
    with trio.CancelScope() as scope:
        timer = deadlines.start(scope, TLS_HANDSHAKE_TIMEOUT)
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as error:
            failure = error
        else:
            shaken = True
            names: frozenset[str] = getattr(stream.context, "names", frozenset())
            # the SNI name's certificate, and what it covers
            client = Client(ip, trusted, b"https", names, unnamed)
            if front.http2 is None or stream.selected_alpn_protocol() != "h2":
                await hand_over(stream, front, client, deadlines, timer)
                return
        finally:
            deadlines.end(timer)  # (ended already if it was handed over)
    if not shaken:
        await _send_alert(stream, transport)
        await trio.aclose_forcefully(stream)
        _handshake_failed(front.requests, ip, failure or trio.TooSlowError())
        return
    if scope.cancelled_caught:  # the first request's deadline, or an instance closed it
        return
    assert front.http2 is not None
    await serve_http2(stream, client, front, front.http2)


async def _send_alert(stream: ServerTLSStream, transport: trio.abc.Stream) -> None:
    """Send the alert OpenSSL wrote when it refused the handshake (`unrecognized_name` for a
    name without a certificate), so the client sees why rather than only a closed connection."""
    alert = stream.refusal()
    if not alert:
        return
    with trio.move_on_after(TLS_HANDSHAKE_TIMEOUT):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await transport.send_all(alert)


async def serve_https(
    front: Front,
    listeners: Sequence[trio.SocketListener],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The public HTTPS port: the SNI name picks the instance (and its certificate)."""
    context = _tls_context(front)
    deadlines = _hand_over_deadlines(front)

    async def handle(stream: LeanSocketStream) -> None:
        ip = stream.peer_ip()
        trusted = is_trusted(ip, front.trusted)
        if not front.admit(stream, ip, trusted):
            await trio.aclose_forcefully(stream)
            return
        await _serve_tls(front, context, deadlines, stream, ip, trusted)

    await _serve_port(front, listeners, handle, deadlines, task_status)


WARN_LIMIT = 1000
"""How many refused peers the PROXY protocol port warns about (each once), so logs stay bounded."""

TLS_RECORD_HANDSHAKE = 0x16
"""The first byte of a TLS client hello; an HTTP request starts with a method's letter."""


async def serve_proxy_protocol(
    front: Front,
    listeners: Sequence[trio.SocketListener],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`PROXY_PROTOCOL_PORT`: connections from a load balancer that names the client first
    (PROXY protocol v1 or v2), then relays its HTTP or TLS. Only peers in `TRUSTED_PROXIES` may
    speak for clients; any other connection is closed unread."""
    context = _tls_context(front)
    deadlines = _hand_over_deadlines(front)
    warned: set[str] = set()

    async def handle(lean: LeanSocketStream) -> None:
        balancer = client_of(lean, front.trusted, b"http")
        if not balancer.trusted:
            if balancer.ip not in warned and len(warned) < WARN_LIMIT:  # once per peer
                warned.add(balancer.ip)
                log.warning("PROXY protocol port: %s is not in TRUSTED_PROXIES", balancer.ip)
            await trio.aclose_forcefully(lean)
            return
        try:
            with trio.fail_after(PROXY_PROTOCOL_TIMEOUT):
                header, rest = await read_header(lean)
        except (ProxyHeaderError, trio.TooSlowError, trio.BrokenResourceError) as error:
            log.warning("PROXY protocol port: %s: %s", balancer.ip, error or "too slow")
            await trio.aclose_forcefully(lean)
            return
        scheme = b"https" if rest[0] == TLS_RECORD_HANDSHAKE else b"http"
        if header.source is None:  # UNKNOWN or LOCAL: nobody named, nobody vouched for
            client = Client(ip=balancer.ip, trusted=False, scheme=scheme, unnamed=True)
        else:
            trusted = is_trusted(header.source, front.trusted)
            client = Client(ip=header.source, trusted=trusted, scheme=scheme)
        if not front.admit(lean, client.ip, client.trusted):  # the named client, not the balancer
            await trio.aclose_forcefully(lean)
            return
        stream = PrefixedStream(lean, rest)
        if scheme == b"https":
            await _serve_tls(
                front, context, deadlines, stream, client.ip, client.trusted, client.unnamed
            )
        else:
            await hand_over(stream, front, client, deadlines)

    await _serve_port(front, listeners, handle, deadlines, task_status)
