"""One request on its way through an instance: what the access checks read and decide, and what
forwarding needs, carried as one value from the request's head to its answer.

The client side is a `Channel` (an HTTP/1.1 connection) today. Forwarding asks it only for the
request's body events and to take the response, so an HTTP/2 stream that offers the same can
feed the same path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import trio

from oauthproxy.logs.records import RequestEntry
from oauthproxy.proxy.codec import Head
from oauthproxy.proxy.headers import Client, Headers, Identity
from oauthproxy.proxy.http import Channel
from oauthproxy.proxy.request import RequestView
from oauthproxy.proxy.upstream import UpstreamPool


class AnswerTimer:
    """A connection's (or an HTTP/2 stream's) request timeout: a deadline on its one cancel
    scope, entered once around all its requests (a scope per request costs twice as much), and
    when the answer awaited now is due.

    Moving a trio deadline costs ~2.7 µs per request (set it, clear it, and the run loop drops
    the stale heap entry), so a request whose timeout is longer than two sweeps only notes
    when it is due (`start`); the instance's sweep, which runs every `sweep` seconds anyway
    for the idle and header timeouts, sets the scope's deadline to exactly that moment once it
    falls before the sweep after next (`arm_if_due`). The deadline fires at the same moment as
    one set per request would, and the answers that come in time (nearly all) never touch
    trio's deadlines. A shorter timeout is armed at once. (Only a sweep late by more than
    `sweep` seconds, an event loop stalled that long, could arm it late.)

    `scope`: the connection's own (entered by the listener's task around its whole life, see
    `instance._Connection`), or an HTTP/2 stream's (entered once around its task), so neither
    pays for a scope of its own for its timeout; the owner tells the timeout from its own
    cancellations (`_Connection.closed`; a stream's `reset`). Before an instance has the
    connection, the same kind of timer on the same scope keeps the TLS handshake's and the
    first request's deadlines (`waiting.HandOverDeadlines`, swept by the port)."""

    __slots__ = ("_armed", "due", "now", "scope", "sweep")

    def __init__(self, sweep: float, scope: trio.CancelScope) -> None:
        self.scope = scope
        self.now = trio.lowlevel.current_clock().current_time
        """`trio.current_time`, with the run's clock looked up once (not four calls deep on
        every request)."""
        self.sweep = sweep
        """How often the owner calls `arm_if_due` (inf: never; every deadline is armed at
        once)."""
        self.due = math.inf
        """When the answer awaited now is due (inf: none is awaited)."""
        self._armed = False

    def start(self, timeout: float) -> None:
        """An answer is awaited from now on, for at most `timeout` seconds (instead of what
        was awaited before, if anything was)."""
        self.due = due = self.now() + timeout
        if timeout <= 2 * self.sweep:  # the sweep might not come round before it is due
            self.scope.deadline = due
            self._armed = True
        elif self._armed:  # an earlier due moment, armed already: the sweep arms this one
            self._armed = False
            self.scope.deadline = math.inf

    def stop(self) -> bool:
        """The answer's head came, or the exchange ended without one: nothing is due. Returns
        whether the deadline fired all the same (the answer came as it passed: it is late, and
        the scope's next checkpoint raises `Cancelled`)."""
        self.due = math.inf
        if not self._armed:
            return False
        self._armed = False
        self.scope.deadline = math.inf
        return self.scope.cancel_called

    def arm_if_due(self, now: float) -> None:
        """The sweep at `now`: arm the deadline of an answer due before the sweep after next
        (the next one may come a little late)."""
        if not self._armed and self.due <= now + 2 * self.sweep:
            self.scope.deadline = self.due
            self._armed = True


@dataclass(slots=True, eq=False)
class Exchange:
    downstream: Channel
    """The client's side: the request's body comes from it, the response goes back to it."""
    request: Head
    view: RequestView
    """The request as routing and auth see it (normalised host, path and target)."""
    client: Client
    pool: UpstreamPool
    """The instance's upstream connections."""
    received: Headers
    """The headers the backend is sent (before the rewrite): the view's, minus what the access
    check takes out (the auth cookie)."""
    answer_by: AnswerTimer
    """The request timeout, whose scope is entered once around all the requests of a
    connection (or around an HTTP/2 stream's task): forwarding starts it while it waits for the
    upstream's answer, and stops it once the answer's head is in. When it fires, the connection
    (the stream) answers 504; a connection closes after it."""
    identity: Identity = ()
    """Who the access check let through, as headers for the backend (empty: anonymous)."""
    entry: RequestEntry | None = None
    """The request's log entry (None: request logging is off); it learns who answered."""
    draining: trio.Event | None = None
    """Set when the gateway shuts down: a response whose head has not gone out yet says
    `Connection: close`, and the connection closes after it."""
    answer_within: float = 0.0
    """The request timeout `answer_by` was set for (for the 504's detail)."""

    @property
    def head_request(self) -> bool:
        """The request is HEAD: its answer has no body."""
        return self.request.method == b"HEAD"
