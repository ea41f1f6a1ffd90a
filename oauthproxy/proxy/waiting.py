"""Accepted connections on their way to an instance: from accept until their first request has
been handed over (or answered, or given up).

On shutdown, those that have not sent a byte yet are closed at once, like the instances' idle
keep-alive connections: nothing of a request would be lost, and the client (a load balancer)
opens its next connection to another replica. Those whose first request has begun are read on
and handed to their instance, which answers them with `Connection: close`; an instance that
drains waits for them (`settled`) before it ends for lack of connections.
"""

from __future__ import annotations

import trio

from oauthproxy.proxy.exchange import AnswerTimer
from oauthproxy.proxy.http import Channel


class FirstRequests:
    def __init__(self) -> None:
        self._silent: set[trio.CancelScope] = set()
        self._reading = 0
        self._closing = False
        self._changed = trio.Event()

    def begin(self) -> None:
        """Count a connection as on its way to an instance (until `end`)."""
        self._reading += 1

    def end(self) -> None:
        self._reading -= 1
        self._changed.set()

    async def first_bytes(self, channel: Channel, scope: trio.CancelScope) -> None:
        """Wait until the connection has sent the start of a request. `scope`, which the caller
        has entered (its first request's deadline), is cancelled if the gateway begins to shut
        down first (at once if it has already): the caller then closes the connection. (The
        caller's scope rather than one of its own: one cancel scope less per connection.)"""
        if self._closing:
            scope.cancel()
            await trio.lowlevel.checkpoint()  # raises Cancelled: caught by `scope`
        self._silent.add(scope)
        try:
            while not (channel.events or channel.codec.in_message):
                await channel.receive()
        finally:
            self._silent.discard(scope)

    def close_all(self) -> None:
        """Shutdown: every connection still silent gives up now, and any later one at once."""
        self._closing = True
        for scope in self._silent:
            scope.cancel()
        self._changed.set()

    async def settled(self) -> None:
        """Once shutting down: wait until no connection is on its way to an instance."""
        while not (self._closing and self._reading == 0):
            self._changed = trio.Event()
            await self._changed.wait()


class HandOverDeadlines:
    """One port's deadlines for its connections until an instance takes them: the TLS
    handshake's, then the first request's. Each is an `AnswerTimer` on the connection's cancel
    scope, as an instance's request timeouts are: `sweep` (every `period` seconds) sets the
    scope's deadline to exactly when it is due once that falls before the sweep after next. A
    connection handed over in time (nearly all) never touches trio's deadline heap, where a
    deadline set at accept, moved after the handshake and lifted at hand-over cost ~20k
    instructions per new TLS connection (docs/benchmarks.md)."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._timers: set[AnswerTimer] = set()

    def start(self, scope: trio.CancelScope, timeout: float) -> AnswerTimer:
        """`scope` (entered by the connection's task) is cancelled `timeout` seconds from now,
        unless `end` comes first."""
        timer = AnswerTimer(self.period, scope)
        timer.start(timeout)
        self._timers.add(timer)
        return timer

    def end(self, timer: AnswerTimer) -> None:
        """The connection was handed over (or closed): its scope has no deadline of ours."""
        timer.stop()
        self._timers.discard(timer)

    async def sweep(self) -> None:
        """Arm the deadlines that fall due before the sweep after next, until cancelled."""
        while True:
            await trio.sleep(self.period)
            now = trio.current_time()
            for timer in self._timers:
                timer.arm_if_due(now)
