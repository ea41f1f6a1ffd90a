"""One proxied hostname: a nursery in its own cancel scope that owns its connections and pool.

The dispatcher hands an instance each connection whose first request names its hostname
(`adopt`). A keep-alive connection whose next request names another hostname moves on to that
hostname's instance (`pass_connection`): load balancers reuse their upstream connections across
Host headers. The connection's task ends here and a new one starts in the other instance's
nursery, so every connection always belongs to the instance it serves. Over TLS, a request may
only name a host the connection's certificate covers (else 421).

`update` swaps the configuration snapshot that every next request reads; `stop` makes every
next request a 404, lets requests in flight finish within the grace period, then cancels the
scope, which closes exactly this hostname's connections.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from oauthproxy.logs.logger import RequestLogger
from oauthproxy.logs.records import RequestEntry
from oauthproxy.models.proxies import AuthMode
from oauthproxy.proxy.access import Allow
from oauthproxy.proxy.challenges import ChallengeLookup, challenge_reply, is_challenge
from oauthproxy.proxy.config import InstanceConfig, PublicPorts
from oauthproxy.proxy.forward import forward
from oauthproxy.proxy.headers import Client, Headers, Identity
from oauthproxy.proxy.http import (
    END,
    BadRequest,
    Event,
    Head,
    PeerClosed,
    Reader,
    close_gently,
    send_reply,
)
from oauthproxy.proxy.login import CALLBACK_PATH
from oauthproxy.proxy.loopback import Admits
from oauthproxy.proxy.protect import (
    NeedsLogin,
    Protection,
    check,
    is_metadata_path,
    metadata_reply,
    without_cookie,
)
from oauthproxy.proxy.request import RequestView, view_of
from oauthproxy.proxy.request_log import Counted, close_entry, noted, open_entry, refused
from oauthproxy.proxy.responses import Reply, error_reply, redirect_reply, unknown_host
from oauthproxy.proxy.tls import covers
from oauthproxy.proxy.upstream import UpstreamPool

log = logging.getLogger(__name__)

LATE_REQUEST_SECONDS = 0.5
"""After `stop`, how long open connections stay to answer requests already sent with a 404."""


@dataclass(eq=False)
class _Connection:
    """A connection an instance serves: what closes it, and when it is closed if it waits on."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    closes_at: float | None = None
    """While it waits for its next request: the end of its idle time, then (once that request
    has begun) of its header time. None while a request is answered."""
    counted: Counted = field(default_factory=Counted)
    """Its byte counts where its last logged request ended (a connection moved from another
    instance starts at 0: its first request here also counts what came before)."""


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
        self._stopping = trio.Event()
        self._in_flight = 0
        self._quiet = trio.Event()
        self._connections: set[_Connection] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until `stop()`; then drain within the grace period and close everything."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._close_idle_connections)
                task_status.started()
                await self._stopping.wait()
                with trio.move_on_after(self._grace):
                    # a request already on its way over an open connection gets a clean 404
                    await trio.sleep(min(self._grace, LATE_REQUEST_SECONDS))
                    while self._in_flight:
                        self._quiet = trio.Event()
                        await self._quiet.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._pool.clear()

    def adopt(
        self, reader: Reader, first: Head, view: RequestView, client: Client, lookup: Lookup
    ) -> bool:
        """Take over a connection whose next request (`first`, seen as `view`) is for this
        hostname; `lookup` finds the instance for another hostname a later request names."""
        if self._nursery is None or self._stopping.is_set():
            return False
        self._nursery.start_soon(self._serve_connection, reader, first, view, client, lookup)
        return True

    async def update(self, config: InstanceConfig) -> None:
        changed_target = self.config is None or self.config.default.origin != config.default.origin
        self.config = config
        if changed_target:
            await self._pool.clear()

    @property
    def connection_count(self) -> int:
        """Connections this instance holds (for the metrics)."""
        return len(self._connections)

    def stop(self) -> None:
        self.config = None
        self._stopping.set()

    async def _close_idle_connections(self) -> None:
        """Every quarter of the shorter timeout, close the connections that have waited too
        long for their next request or its head (see `_next_request`). (One sweep per instance
        costs less than moving a deadline three times per request.)"""
        while True:
            await trio.sleep(min(self._idle_timeout, self._header_timeout) / 4)
            now = trio.current_time()
            for connection in self._connections:
                if connection.closes_at is not None and connection.closes_at <= now:
                    connection.scope.cancel()

    async def _next_request(self, reader: Reader, connection: _Connection) -> Event:
        """The next event on a kept-alive connection: its first byte may take the idle timeout,
        the rest of the head only the (shorter) header timeout, so a head sent slowly cannot
        hold the connection for an idle timeout per byte."""
        connection.closes_at = trio.current_time() + self._idle_timeout
        while not (reader.events or reader.in_message):
            await reader.receive()
        connection.closes_at = trio.current_time() + self._header_timeout
        event = await reader.next_event()
        connection.closes_at = None
        return event

    async def _serve_connection(
        self, reader: Reader, request: Head, view: RequestView, client: Client, lookup: Lookup
    ) -> None:
        connection = _Connection()
        self._connections.add(connection)
        moved = False
        try:
            with connection.scope:
                while await self._handle(reader, request, view, client, connection.counted):
                    event = await self._next_request(reader, connection)
                    if not isinstance(event, Head):
                        return
                    request = event
                    view = view_of(request, client.scheme)
                    if view.host != self.hostname:
                        moved = await pass_connection(
                            reader, request, view, client, lookup, self._requests
                        )
                        return
        except BadRequest as error:
            refused(self._requests, client, refusal(error), None)
            await refuse(reader, error)
        except PeerClosed:
            pass
        except Exception:
            # One connection's failure is that connection's: log it, close it, and keep the
            # instance (and every other connection) serving.
            log.exception("connection to %s failed", self.hostname)
        finally:
            self._connections.discard(connection)
            if not moved:
                await close_gently(reader.stream)

    async def _handle(
        self, reader: Reader, request: Head, view: RequestView, client: Client, counted: Counted
    ) -> bool:
        self._in_flight += 1
        requests = self._requests
        entry = (
            None
            if requests is None
            else open_entry(reader, request, client, self.hostname, counted)
        )
        try:
            return await self._respond(reader, request, view, client, entry)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._quiet.set()
            if entry is not None and requests is not None:
                close_entry(entry, reader, requests, counted)

    async def _respond(
        self,
        reader: Reader,
        request: Head,
        view: RequestView,
        client: Client,
        entry: RequestEntry | None,
    ) -> bool:
        """Answer one request; returns whether the connection can carry another. `entry`: its
        log entry, which learns who answered and how."""
        if is_challenge(request.target):
            reply = await challenge_reply(request.target, self._challenges)
            return await answer(reader, request, noted(entry, reply))
        config = self.config
        refusal = self._refusal(config, view, request, client)
        if refusal is not None or config is None:
            reply = noted(entry, refusal or unknown_host(view.host, b""))
            await send_reply(reader.stream, reply, close=True, head=request.method == b"HEAD")
            return False
        received = view.headers
        identity: Identity = ()
        if config.protection is not None:
            outcome = await _front_door(config, config.protection, received, client, view)
            if isinstance(outcome, Reply):
                return await answer(reader, request, noted(entry, outcome))
            if entry is not None and outcome.claims is not None:
                entry.user, entry.client_id = outcome.claims.username, outcome.claims.client_id
            identity = outcome.headers
            received = without_cookie(received, config.protection.target.auth_cookie_name)
        destination = config.destination(view.path, request.method.decode())
        if destination is None:
            reply = error_reply(
                502,
                "bad_gateway",
                "the matching route's target cannot be resolved",
                accept=request.header(b"accept"),
            )
            noted(entry, reply)
            await send_reply(reader.stream, reply, close=True, head=request.method == b"HEAD")
            return False
        if view.target is not request.target:  # the backend gets the normalised target
            request = dataclasses.replace(request, target=view.target)
        return await forward(
            reader, request, destination, self._pool, client, received, identity, entry
        )

    def _refusal(
        self, config: InstanceConfig | None, view: RequestView, request: Head, client: Client
    ) -> Reply | None:
        """The answer when this request is not to be forwarded (deleted proxy, wrong host,
        plain HTTP where HTTPS is wanted), else None."""
        accept = request.header(b"accept")
        host = view.host
        if config is None or (self._admits and not self._admits(client, request.headers)):
            return unknown_host(host, accept)
        if host != self.hostname:
            detail = f"this connection serves {self.hostname!r}; open a new one for {host!r}"
            return error_reply(421, "misdirected_request", detail, accept=accept)
        target = config.target
        if client.scheme == b"https" or (target.enable_http and not target.https_redirect):
            return None
        if config.tls is not None:
            return redirect_reply(self._https_url(view.target))
        if target.enable_http:
            return None
        return error_reply(404, "http_disabled", f"{host} is served over HTTPS only", accept=accept)

    def _https_url(self, target: bytes) -> str:
        port = self._ports.https
        authority = self.hostname if port in (0, 443) else f"{self.hostname}:{port}"
        return f"https://{authority}{target.decode('latin-1')}"


async def _front_door(
    config: InstanceConfig,
    protection: Protection,
    received: Headers,
    client: Client,
    view: RequestView,
) -> Reply | Allow:
    """Protected resource metadata, the browser login's callback, or the bearer check. The
    origin is the normalised authority: tokens are issued for `http://mcp.test`, whatever case
    or default port a client's Host header spells it with."""
    origin = f"{client.scheme.decode()}://{view.authority}"
    path = view.path
    if protection.serves_metadata and is_metadata_path(path):
        return metadata_reply(protection, origin)
    login = config.shared.login
    redirect = protection.policy is not None and protection.policy.mode is AuthMode.REDIRECT
    if redirect and login is not None and path == CALLBACK_PATH:
        secure = client.scheme == b"https"
        cookie = protection.target.auth_cookie_name
        return await login.finish(view.query[1:], received, cookie, secure=secure)
    outcome = check(protection, received, origin, path, view.has_encoded_separator)
    if not isinstance(outcome, NeedsLogin):
        return outcome
    if login is None:
        return error_reply(503, "login_unavailable", "browser login is not available")
    target = view.target.decode("latin-1")
    return await login.start(config.target.hostname, origin, target, client, received)


Lookup = Callable[[str], "Instance | None"]
"""The supervisor's hostname → instance table, as a function."""


async def pass_connection(
    reader: Reader,
    request: Head,
    view: RequestView,
    client: Client,
    lookup: Lookup,
    requests: RequestLogger | None = None,
) -> bool:
    """Give the connection to the instance for `view.host`. When none may take it, answer
    (421: the TLS certificate does not cover that host; 404: no such proxy; both logged to
    `requests`) and return False: the caller closes the connection."""
    head = request.method == b"HEAD"
    accept = request.header(b"accept")
    if client.scheme == b"https" and not covers(client.tls_names, view.host):
        detail = f"this connection's certificate does not cover {view.host!r}; open a new one"
        reply = error_reply(421, "misdirected_request", detail, accept=accept)
        await send_reply(reader.stream, reply, close=True, head=head)
        refused(requests, client, reply, request, view.host)
        return False
    instance = lookup(view.host)
    if instance is not None and instance.adopt(reader, request, view, client, lookup):
        return True
    reply = unknown_host(view.host, accept)
    await send_reply(reader.stream, reply, close=True, head=head)
    refused(requests, client, reply, request, view.host)
    return False


async def answer(reader: Reader, request: Head, reply: Reply) -> bool:
    """Answer without forwarding. Returns whether the connection can carry another request:
    not when the request has a body we did not read, nor when either side said close."""
    head = request.method == b"HEAD"
    if request.has_body or not request.keep_alive:
        await send_reply(reader.stream, reply, close=True, head=head)
        return False
    if await reader.next_event() is not END:
        raise BadRequest("a request without a body sent one")
    await send_reply(reader.stream, reply, head=head)
    return True


def refusal(error: BadRequest) -> Reply:
    """The 400 (or 431) for what could not be parsed."""
    reason = "request_header_fields_too_large" if error.status == 431 else "bad_request"
    return error_reply(error.status, reason, str(error))


async def refuse(reader: Reader, error: BadRequest) -> None:
    """Answer what could not be parsed; the connection closes after it."""
    with trio.move_on_after(1), contextlib.suppress(PeerClosed):
        await send_reply(reader.stream, refusal(error), close=True)
