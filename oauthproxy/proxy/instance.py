"""One proxied hostname: a nursery in its own cancel scope that owns its connections and pool.

The dispatcher hands an instance each connection whose first request names its hostname
(`adopt`). A keep-alive connection whose next request names another hostname moves on to that
hostname's instance (`pass_connection`): load balancers reuse their upstream connections across
Host headers. Over TLS, a request may only name a host the connection's certificate covers
(else 421).

Who owns a connection: the instance it serves, though not through a task in the instance's
nursery. The connection is served in the task that read its first request (its listener's,
`handover.carry`: one task per connection, not two), inside the connection's one cancel scope
(entered by that task around the connection's whole life: `_Connection`), and the instance
registers it in `_connections` from `adopt` until it is closed or has moved on (it is then
registered with the next instance only). Ending the instance cancels exactly the scopes it
registered, and `run` returns only once every one of them has closed, as it would for
tasks of its own nursery. The nursery holds the instance's own tasks (its idle sweep).

`update` swaps the configuration snapshot that every next request reads. Two ways to end:

- `stop` (the proxy was deleted): every next request gets a 404, requests in flight finish
  within the grace period, then its connections' scopes are cancelled, which closes exactly
  this hostname's connections.
- `drain` (the gateway shuts down; its listeners are closed): the configuration stays, so every
  request on an open connection is served normally until the grace deadline, but each response
  says `Connection: close` and closes its connection after it; connections waiting idle for
  their next request close at once, so clients (load balancers) retry elsewhere. The instance
  ends once every connection has closed, or at the grace deadline (cancelling those left).

HTTP/2 streams for this hostname run in their connection's nursery (one connection carries
streams for many hostnames), so the instance keeps them apart: each stream it serves is
registered (`serving`) with its cancel scope and its connection. Both ways to end wait for them
as they wait for HTTP/1.1 requests; at the end those still running are cancelled (the client
gets RST_STREAM CANCEL), and every HTTP/2 connection that carried this hostname gets a graceful
GOAWAY, so its client opens a new connection (and handshake) for the next request, as the
HTTP/1.1 connections the instance closes do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

import trio

from oauthproxy.logs.logger import RequestLogger
from oauthproxy.proxy.challenges import ChallengeLookup, challenge_reply, is_challenge
from oauthproxy.proxy.codec import Event, Head, State
from oauthproxy.proxy.config import InstanceConfig, PublicPorts
from oauthproxy.proxy.exchange import AnswerTimer, Exchange
from oauthproxy.proxy.forward import Destination, forward, open_upstream, timed_out
from oauthproxy.proxy.handover import Lookup, Serving, answer, pass_connection, refusal, refuse
from oauthproxy.proxy.headers import Client
from oauthproxy.proxy.http import BadRequest, Channel, PeerClosed, close_gently
from oauthproxy.proxy.loopback import Admits
from oauthproxy.proxy.protect import without_cookie
from oauthproxy.proxy.protected import admitted_at_once, login_step
from oauthproxy.proxy.request import RequestView, view_of
from oauthproxy.proxy.request_log import Counted, close_entry, noted, open_entry, refused
from oauthproxy.proxy.responses import Reply, error_reply, redirect_reply, unknown_host
from oauthproxy.proxy.upstream import UpstreamPool

log = logging.getLogger(__name__)

_IN_MESSAGE = frozenset({State.HEAD, State.BODY})
"""`Codec.in_message`, as a set: the loop between requests tests it without a call."""

LATE_REQUEST_SECONDS = 0.5
"""After `stop`, how long open connections stay to answer requests already sent with a 404."""


class _Connection:
    """A connection an instance serves: what closes it, and when it is closed if it waits on.

    Its `scope` is the connection's one cancel scope, entered by the listener's task around the
    connection's whole life (`dispatcher.hand_over`): it serves both to close it (`close`: stop,
    drain, the idle sweep) and as its request timeout (`answer_by`'s deadline), so a connection
    enters no scope of its own here. `closed` tells the two apart: a cancellation nobody called
    `close` for is the request timeout. A connection closed by the idle sweep or a drain closes
    gently; one closed because its instance ends closes at once (`Instance._ended`)."""

    __slots__ = ("answer_by", "closed", "closes_at", "counted", "done", "idle", "late", "scope")

    def __init__(self, scope: trio.CancelScope, sweep: float) -> None:
        self.scope = scope
        self.answer_by = AnswerTimer(sweep, scope)
        """Its request timeout (`Exchange.answer_by`): fires while an upstream is late to
        answer. The instance's sweep arms it (`AnswerTimer.arm_if_due`)."""
        self.closed = False
        """`close` was called (or the scope was cancelled before the instance took it): its
        scope's cancellation is not a request timeout."""
        self.done = False
        """The instance serves it no more (it closes, or it moved on): `close` leaves it be."""
        self.closes_at: float | None = None
        """While it waits for its next request: the end of its idle time, then (once that
        request has begun) of its header time. None while a request is answered."""
        self.counted = Counted()
        """Its byte counts where its last logged request ended (a connection moved from another
        instance starts at 0: its first request here also counts what came before)."""
        self.idle = False
        """It waits for the first byte of its next request: nothing of it would be lost by
        closing."""
        self.late: tuple[Reply, bool] | None = None
        """The 504 owed when `answer_by` fired, and whether it answers a HEAD request."""

    def close(self) -> None:
        """Close it (whatever it is doing) for the instance: not a request timeout. Once it is
        `done` (closing within `close_gently`'s bounded linger, or moved on), nothing."""
        if not self.done:
            self.closed = True
            self.scope.cancel()


class Multiplexed(Protocol):
    """The HTTP/2 connection a stream arrived on, as an instance sees it."""

    def go_away(self) -> None:
        """Graceful GOAWAY: streams already taken finish, the client opens a new connection
        for the next ones."""


class MultiplexedStream(Protocol):
    """An HTTP/2 stream, as the instance that answers it sees it."""

    @property
    def connection(self) -> Multiplexed: ...

    def cancel(self) -> None:
        """End its task, and the stream with RST_STREAM CANCEL unless it is answered."""

    @property
    def answer_by(self) -> AnswerTimer | None:
        """Its request timeout, while it is answered (`Instance.answer_timer`)."""


class Instance:
    def __init__(
        self,
        hostname: str,
        config: InstanceConfig,
        pool: UpstreamPool,
        *,
        grace: float,
        idle_timeout: float,
        header_timeout: float = math.inf,
        challenges: ChallengeLookup,
        ports: PublicPorts,
        admits: Admits | None = None,
        requests: RequestLogger | None = None,
    ):
        self.hostname = hostname
        self.config: InstanceConfig | None = config
        self._pool = pool
        self._grace = grace
        self._idle_timeout = idle_timeout
        self._header_timeout = header_timeout
        self._challenges = challenges
        self._ports = ports
        self._admits = admits
        """Who may be served at all (the API hostnames: loopback clients); None: everyone."""
        self._requests = requests if requests is not None and requests.active else None
        """Where each exchange's log entry goes; None: request logging is off."""
        self._nursery: trio.Nursery | None = None
        self._ended = False
        """Set when `run` ends: the connections it cancels then close at once, without the
        half-close and up to `LINGER_SECONDS` of reading of `close_gently` (a connection that
        lingers already when the instance ends finishes its linger)."""
        self._stopping = trio.Event()
        self._draining = trio.Event()
        self._is_draining = False
        """`_draining.is_set()`, read on every request without a call."""
        self._settled: Callable[[], Awaitable[None]] | None = None
        self._in_flight = 0
        self._quiet = trio.Event()
        """Set when a request ends or a connection closes: what `run` waits on to finish."""
        self._connections: set[_Connection] = set()
        self._streams: set[MultiplexedStream] = set()
        """The HTTP/2 streams being answered for this hostname."""
        self._multiplexed: weakref.WeakSet[Multiplexed] = weakref.WeakSet()
        """The HTTP/2 connections still open that carried a stream for this hostname."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until `stop()` or `drain()`; then finish within the grace period and close
        everything."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.config is not None:
                    await self._pool.retarget(self.config.origins())
                nursery.start_soon(self._close_idle_connections)
                task_status.started()
                await self._stopping.wait()
                with trio.move_on_after(self._grace):
                    if self._draining.is_set():
                        if self._settled is not None:
                            await self._settled()  # no connection is on its way here any more
                        await self._until(lambda: not (self._connections or self._streams))
                    else:
                        # a request already on its way over an open connection gets a clean 404
                        await trio.sleep(min(self._grace, LATE_REQUEST_SECONDS))
                        await self._until(lambda: not self._in_flight)
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None  # no more `adopt`
            self._ended = True
            self._end_streams()
            for connection in self._connections:
                connection.close()
            with trio.CancelScope(shield=True):
                # they close at once in their own tasks (`_ended`)
                await self._until(lambda: not self._connections)
                await self._pool.clear()

    def adopt(
        self,
        channel: Channel,
        first: Head,
        view: RequestView,
        client: Client,
        lookup: Lookup,
        scope: trio.CancelScope,
    ) -> Serving | None:
        """Take over a connection whose next request (`first`, seen as `view`) is for this
        hostname: its serving, for the caller's task to run (`carry`) within `scope`, the
        connection's cancel scope, which that task has entered; None if this instance takes no
        connections any more. `lookup` finds the instance for another hostname a later request
        names."""
        if self._nursery is None or (self._stopping.is_set() and not self._draining.is_set()):
            return None
        if scope.deadline != math.inf:  # the first request's (`dispatcher`): ours from here
            scope.deadline = math.inf
        connection = _Connection(scope, self._sweep)
        # cancelled already (the first request's deadline passed as its head came, or the
        # instance it comes from closed it as it moved): it closes, and owes no 504
        connection.closed = scope.cancel_called
        self._connections.add(connection)  # now: a drain must not end before it is served
        return functools.partial(
            self._serve_connection, connection, channel, first, view, client, lookup
        )

    async def update(self, config: InstanceConfig) -> None:
        """Serve every next request with `config`; connections to origins it no longer targets
        close (idle ones now, busy ones when their exchange ends)."""
        self.config = config
        await self._pool.retarget(config.origins())

    @property
    def connection_count(self) -> int:
        """Connections this instance holds (for the metrics): its HTTP/1.1 connections, and the
        HTTP/2 connections with a stream for it in flight."""
        if not self._streams:
            return len(self._connections)
        return len(self._connections) + len({stream.connection for stream in self._streams})

    @property
    def active_requests(self) -> int:
        """Requests being answered (for the metrics): HTTP/1.1 requests and HTTP/2 streams."""
        return self._in_flight

    def stop(self) -> None:
        """The proxy was deleted: every next request gets a 404 (see the module docstring)."""
        self.config = None
        self._stopping.set()

    def drain(self, settled: Callable[[], Awaitable[None]] | None = None) -> None:
        """The gateway shuts down: serve what open connections send, closing each after its
        response, and close the idle ones now (see the module docstring). `settled` returns
        once no connection is on its way to an instance any more (the listeners' first
        requests): until then the instance may still be handed one."""
        self._settled = settled
        self._draining.set()
        self._is_draining = True
        self._stopping.set()
        for connection in self._connections:
            if connection.idle:
                connection.close()

    async def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            self._quiet = trio.Event()
            await self._quiet.wait()

    @property
    def _sweep(self) -> float:
        """How often `_close_idle_connections` sweeps: a quarter of the shorter timeout."""
        return min(self._idle_timeout, self._header_timeout) / 4

    async def _close_idle_connections(self) -> None:
        """Every quarter of the shorter timeout, close the connections that have waited too
        long for their next request or its head (see `_serve_connection`), and arm the request
        timeouts (of connections and HTTP/2 streams) that fall due before the sweep after next
        (`AnswerTimer`). (One sweep per
        instance costs less than moving a deadline three times per request.)"""
        while True:
            await trio.sleep(self._sweep)
            now = trio.current_time()
            for connection in self._connections:
                if connection.closes_at is not None and connection.closes_at <= now:
                    connection.close()
                connection.answer_by.arm_if_due(now)
            for stream in self._streams:
                if stream.answer_by is not None:
                    stream.answer_by.arm_if_due(now)

    async def _rest_of_head(self, channel: Channel, connection: _Connection) -> Event:
        """The rest of a kept-alive connection's next request head, whose first bytes came
        (`_serve_connection` waits for them, within the idle timeout): the rest may take only
        the (shorter) header timeout, so a head sent slowly cannot hold the connection for an
        idle timeout per byte."""
        connection.closes_at = connection.answer_by.now() + self._header_timeout
        event = await channel.next_event()
        connection.closes_at = None
        return event

    async def _serve_connection(
        self,
        connection: _Connection,
        channel: Channel,
        request: Head,
        view: RequestView,
        client: Client,
        lookup: Lookup,
    ) -> Serving | None:
        """Serve the connection until it closes (None), or until it moves to the instance a
        request names (that instance's serving: see `handover.carry`)."""
        moved: Serving | None = None
        cancelled = False
        events, codec = channel.events, channel.codec
        try:
            while await self._handle(channel, request, view, client, connection):
                if self._is_draining and not (events or codec.their_state in _IN_MESSAGE):
                    return None  # idle now: closed at once, like those `drain` found idle
                # the next request: its first byte may take the idle timeout (the sweep closes
                # the connection then), the rest of its head only the header timeout
                connection.closes_at = connection.answer_by.now() + self._idle_timeout
                connection.idle = True
                while not (events or codec.their_state in _IN_MESSAGE):
                    await channel.receive()
                connection.idle = False
                if events:  # the whole head came in one read (the common case)
                    connection.closes_at = None
                    event = events.popleft()
                else:
                    event = await self._rest_of_head(channel, connection)
                if not isinstance(event, Head):
                    return None
                request = event
                view = view_of(request, client.scheme)
                if view.host != self.hostname:
                    scope = connection.scope
                    moved = await pass_connection(
                        channel, request, view, client, lookup, scope, self._requests
                    )
                    return moved
        except trio.Cancelled:  # caught by the connection's scope, in the listener's task
            cancelled = True
            if connection.late is not None:  # the upstream did not answer in time: a 504
                reply, head = connection.late
                # in a scope of its own, shielded from the connection's (cancelled), which
                # `close` still cancels (stop and drain end the send as they would have)
                connection.scope = trio.CancelScope(shield=True)
                with connection.scope, contextlib.suppress(PeerClosed):
                    await channel.send_reply(reply, close=True, head=head)
            raise
        except BadRequest as error:
            refused(self._requests, client, refusal(error), None)
            await refuse(channel, error)
        except PeerClosed:
            pass
        except Exception:
            # One connection's failure is that connection's: log it, close it, and keep the
            # instance (and every other connection) serving.
            log.exception("connection to %s failed", self.hostname)
        finally:
            connection.done = True  # (`close` leaves the linger be)
            try:
                if moved is None and self._ended:
                    # as a task of a cancelled nursery would: a linger would hold the instance's
                    # end, and the gateway's shutdown, a second more per silent client
                    await trio.aclose_forcefully(channel.stream)
                elif moved is None:
                    if cancelled:  # the connection's scope would cut the linger (bounded itself)
                        with trio.CancelScope(shield=True):
                            await close_gently(channel.stream)
                    else:
                        await close_gently(channel.stream)
            finally:
                self._connections.discard(connection)
                self._quiet.set()
        return None

    async def _handle(
        self,
        channel: Channel,
        request: Head,
        view: RequestView,
        client: Client,
        connection: _Connection,
    ) -> bool:
        self._in_flight += 1
        requests = self._requests
        counted = connection.counted
        entry = (
            None
            if requests is None
            else open_entry(channel, request, client, self.hostname, counted, requests)
        )
        answer_by = connection.answer_by
        exchange = Exchange(
            channel,
            request,
            view,
            client,
            self._pool,
            view.headers,
            answer_by,
            (),
            entry,
            self._draining,
        )
        try:
            if self._is_draining:  # the answer says Connection: close, and closes after it
                exchange.request = dataclasses.replace(request, keep_alive=False)
            routed = self._route_at_once(exchange) or await self._route_awaited(exchange)
            if isinstance(routed, Destination):
                return await forward(exchange, routed, await open_upstream(exchange, routed))
            reply, last = routed
            if last:
                await channel.send_reply(reply, close=True, head=exchange.head_request)
                return False
            return await answer(channel, exchange.request, reply)
        except BaseException:
            if answer_by.scope.cancel_called and not connection.closed and channel.can_reply:
                # the request timeout: the 504 is sent once the connection's scope caught it
                reply = error_reply(504, "gateway_timeout", timed_out(exchange.answer_within))
                connection.late = noted(entry, reply), exchange.head_request
            raise
        finally:
            self._in_flight -= 1
            if not self._in_flight:  # (what `run` waits for; a closed connection sets it too)
                self._quiet.set()
            if entry is not None and requests is not None:
                close_entry(entry, channel, requests, counted)

    async def route(self, exchange: Exchange) -> Destination | tuple[Reply, bool]:
        """Where one request goes: its destination, or the gateway's own answer (noted on the
        exchange's log entry) and whether its connection closes after it. The access check
        runs here (it may take out the auth cookie and add identity headers), and the target
        the backend gets is the normalised one. HTTP/1.1 connections and HTTP/2 streams both
        ask here, so they cannot differ in what they let through."""
        return self._route_at_once(exchange) or await self._route_awaited(exchange)

    def _route_at_once(self, exchange: Exchange) -> Destination | tuple[Reply, bool] | None:
        """`route`'s answer when it needs no await, else None: an ACME challenge, or a request
        the browser login takes (then `_route_awaited` answers). (The common request, with or
        without a bearer check, costs no coroutine.)"""
        view, request = exchange.view, exchange.request
        if is_challenge(request.target):
            return None
        config = self.config
        refused_reply = self._refusal(config, view, request, exchange.client)
        if refused_reply is not None or config is None:
            return noted(exchange.entry, refused_reply or unknown_host(view.host, b"")), True
        protection = config.protection
        if protection is not None:
            outcome = admitted_at_once(protection, config.shared.login, exchange)
            if outcome is None:
                return None
            entry = exchange.entry
            if isinstance(outcome, Reply):
                return noted(entry, outcome), False
            if entry is not None and outcome.claims is not None:
                entry.user, entry.client_id = outcome.claims.username, outcome.claims.client_id
            exchange.identity = outcome.headers
            cookie = protection.target.auth_cookie_name
            exchange.received = without_cookie(exchange.received, cookie)
        return self._destination(exchange, config)

    async def _route_awaited(self, exchange: Exchange) -> Destination | tuple[Reply, bool]:
        """`route` for what `_route_at_once` left: the challenge's answer, or the browser
        login's (`protected.login_step`)."""
        entry, request = exchange.entry, exchange.request
        if is_challenge(request.target):
            return noted(entry, await challenge_reply(request.target, self._challenges)), False
        config = self.config  # (as `_route_at_once` saw it: nothing was awaited since)
        assert config is not None
        assert config.protection is not None
        assert config.shared.login is not None
        reply = await login_step(config.protection, config.shared.login, exchange)
        return noted(entry, reply), False

    def _destination(
        self, exchange: Exchange, config: InstanceConfig
    ) -> Destination | tuple[Reply, bool]:
        view, entry, request = exchange.view, exchange.entry, exchange.request
        destination = config.destination(view.path, request.method.decode())
        if destination is None:
            detail = "the matching route's target cannot be resolved"
            reply = error_reply(502, "bad_gateway", detail, accept=request.header(b"accept"))
            return noted(entry, reply), True
        if destination.down is not None:
            detail = f"the service {destination.down!r} is down: its container is not running"
            reply = error_reply(503, "service_down", detail, accept=request.header(b"accept"))
            return noted(entry, reply), False
        if view.target is not request.target:  # the backend gets the normalised target
            exchange.request = dataclasses.replace(request, target=view.target)
        return destination

    def answer_timer(self, scope: trio.CancelScope) -> AnswerTimer:
        """A request timeout over an HTTP/2 stream's `scope` that this instance's sweep arms
        while the stream is `serving`, as it arms its connections' (`AnswerTimer`)."""
        return AnswerTimer(self._sweep, scope)

    @property
    def pool(self) -> UpstreamPool:
        """The instance's upstream connections."""
        return self._pool

    @contextlib.contextmanager
    def serving(self, stream: MultiplexedStream) -> Iterator[None]:
        """Count an HTTP/2 stream (answered outside `_handle`, in its connection's nursery)
        as in flight: `stop` and `drain` let it finish within the grace period, and cancel it
        at their end (see the module docstring)."""
        self._in_flight += 1
        self._streams.add(stream)
        self._multiplexed.add(stream.connection)
        if self._nursery is None:  # ended between the lookup and now
            stream.cancel()
        try:
            yield
        finally:
            self._in_flight -= 1
            self._streams.discard(stream)
            self._quiet.set()

    def _end_streams(self) -> None:
        """The instance has ended: cancel its HTTP/2 streams still running (their RST_STREAM
        is queued first), then send each connection that carried one a GOAWAY."""
        for stream in list(self._streams):
            stream.cancel()
        for connection in list(self._multiplexed):
            connection.go_away()

    def _refusal(
        self, config: InstanceConfig | None, view: RequestView, request: Head, client: Client
    ) -> Reply | None:
        """The answer when this request is not to be forwarded (deleted proxy, wrong host,
        plain HTTP where HTTPS is wanted), else None."""
        host = view.host
        if config is None or (self._admits and not self._admits(client, request.headers)):
            return unknown_host(host, request.header(b"accept"))
        if host != self.hostname:
            detail = f"this connection serves {self.hostname!r}; open a new one for {host!r}"
            return error_reply(421, "misdirected_request", detail, accept=request.header(b"accept"))
        target = config.target
        if client.scheme == b"https" or (target.enable_http and not target.https_redirect):
            return None  # (forwarded: the Accept header, which only shapes our replies, unread)
        if config.tls is not None:
            return redirect_reply(self._https_url(view.target))
        if target.enable_http:
            return None
        detail = f"{host} is served over HTTPS only"
        return error_reply(404, "http_disabled", detail, accept=request.header(b"accept"))

    def _https_url(self, target: bytes) -> str:
        port = self._ports.https
        authority = self.hostname if port in (0, 443) else f"{self.hostname}:{port}"
        return f"https://{authority}{target.decode('latin-1')}"
