"""The one task that writes an HTTP/2 connection's socket."""

from __future__ import annotations

import trio
from h2.connection import H2Connection

from oauthproxy.proxy.http import ClientGone

_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class Writer:
    """The connection's one writer: it sends what the `h2` machine has queued whenever a
    stream asks (`poke`), and `flush` waits until everything queued before it has gone out."""

    def __init__(self, h2: H2Connection, stream: trio.abc.Stream) -> None:
        self._h2 = h2
        self._stream = stream
        self._wanted = trio.Event()
        self._progress = trio.Event()
        self._asked = 0
        self._written = 0
        self._first = b""
        self.broken = False
        self.writes = 0
        """Writes finished so far (the client took what was queued before each)."""

    def poke(self) -> None:
        self._asked += 1
        self._wanted.set()

    def poke_if_queued(self) -> int:
        """`poke`, if the `h2` machine has queued anything; how many bytes it had. (The reader
        after each read, and each stream as it ends: most reads only bring requests, and most
        streams end with their answer written, which leaves nothing queued, and the writer is
        not woken for them.)"""
        queued = self._h2.data_to_send()
        if queued:
            self._first += queued
            self.poke()
        return len(queued)

    def push(self, frame: bytes) -> None:
        """A frame built outside the `h2` machine (the graceful GOAWAY), sent after what the
        machine has queued so far (a stream's RST_STREAM, say) and before what it queues next."""
        self._first += self._h2.data_to_send() + frame
        self.poke()

    async def flush(self) -> None:
        self.poke()
        wanted = self._asked
        while self._written < wanted and not self.broken:
            await self._progress.wait()
        if self.broken:
            raise ClientGone("the connection broke")

    async def run(self, broke: trio.Event) -> None:
        try:
            while True:
                await self._wanted.wait()
                self._wanted = trio.Event()
                asked = self._asked
                data = self._first + self._h2.data_to_send()
                self._first = b""
                if data:
                    await self._stream.send_all(data)
                    self.writes += 1
                self._written = asked
                self._progress.set()
                self._progress = trio.Event()
        except _BROKEN:
            self.broken = True
            self._progress.set()
            broke.set()
