"""Accepted connections on their way to an instance: from accept until their first request has
been handed over (or answered, or given up).

On shutdown, those that have not sent a byte yet are closed at once, like the instances' idle
keep-alive connections: nothing of a request would be lost, and the client (a load balancer)
opens its next connection to another replica. Those whose first request has begun are read on
and handed to their instance, which answers them with `Connection: close`; an instance that
drains waits for them (`settled`) before it ends for lack of connections.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

from oauthproxy.proxy.http import Channel


class FirstRequests:
    def __init__(self) -> None:
        self._silent: set[trio.CancelScope] = set()
        self._reading = 0
        self._closing = False
        self._changed = trio.Event()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Count a connection as on its way to an instance for the block."""
        self._reading += 1
        try:
            yield
        finally:
            self._reading -= 1
            self._changed.set()

    async def first_bytes(self, channel: Channel) -> bool:
        """Wait until the connection has sent the start of a request; False when the gateway
        began to shut down first (then the caller closes it)."""
        if self._closing:
            return False
        with trio.CancelScope() as scope:
            self._silent.add(scope)
            try:
                while not (channel.events or channel.codec.in_message):
                    await channel.receive()
            finally:
                self._silent.discard(scope)
        return not scope.cancelled_caught

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
