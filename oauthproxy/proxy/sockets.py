"""A TCP stream for the proxy's hot path: trio's `SocketStream`, redone with fewer trips to the
scheduler.

trio's socket stream checks for cancellation, tries the operation, and yields to the scheduler
after it succeeds; its `send_all` yields after every write. Here `send_all` writes straight
away, waiting only while the socket buffer is full, and `receive_some` yields first (the
checkpoint) and then reads, waiting for readability only when nothing has arrived.

Yielding before the read is what makes a busy proxy cheap: while the other connections' tasks
run, the peer's answer arrives, so the read finds it and the socket is never registered with
epoll. Waiting for readability first instead costs an `epoll_ctl` (and trio's bookkeeping) on
every read: 51-53 against 41-45 µs of CPU per proxied keep-alive request, one core in front of
nginx (benchmarks/README.md). An idle connection pays one failed `read` before its wait. What
the peer sends only after work of its own (a TLS client's handshake flight) is read after a
wait instead (`receive_awaited`): there the read before it would nearly always fail.

Every loop of the data plane receives between sends, so each task still reaches a checkpoint once
per read: cancellation and fairness hold. `send_eof`, `wait_send_all_might_not_block` and the
errors they raise are as trio's.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Awaitable, Callable

import trio
from trio.lowlevel import checkpoint, wait_readable, wait_writable

from oauthproxy.proxy.http import READ_SIZE


class WrappedStream(trio.abc.HalfCloseableStream):
    """A stream over `transport` that changes how bytes come in or go out; the rest is the
    transport's own."""

    def __init__(self, transport: trio.abc.HalfCloseableStream) -> None:
        self.transport = transport

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return bytes(await self.transport.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.transport.send_eof()

    async def aclose(self) -> None:
        await self.transport.aclose()


class LeanSocketStream(trio.abc.HalfCloseableStream):
    """A TCP stream over a non-blocking stdlib socket (not trio's `SocketStream`: the accept loop
    builds one per connection, and trio's costs two `setsockopt` calls and its checks each time;
    the listening sockets carry those options for every accepted one, see
    `dispatcher.serve_listener`). Nor a trio socket under it: every wait goes to trio by the
    descriptor's number (`_wait`), so an accepted connection needs no trio object of its own
    (5-18k instructions fewer per new TLS connection, by `just bench-instructions`); a trio
    socket given (an upstream connection's) is unwrapped.

    `send_timeout`: how long one send may wait for the peer to take data before the stream
    counts as broken (a client that stops reading must not hold its response, and the upstream
    connection behind it, forever). Only a send that would block waits, so the hot path pays
    nothing for it. `peer`: the peer's address when the caller knows it already (`accept`
    returns it), else asked of the socket."""

    def __init__(
        self,
        sock: socket.socket | trio.socket.SocketType,
        *,
        send_timeout: float = math.inf,
        peer: str | None = None,
    ) -> None:
        # a trio socket (upstream connections): the stdlib one it wraps
        stdlib = sock if isinstance(sock, socket.socket) else sock._sock  # type: ignore[attr-defined]
        self.socket: socket.socket = stdlib
        """The stdlib socket, non-blocking (`serve_listener` sets that on the ones it accepts)."""
        self.fd = stdlib.fileno()
        """Its descriptor, -1 once `close_socket` closed it (set there, before the number can
        be another socket's): reads and writes use it as it is, and a closed stream's fail with
        EBADF, which they raise as `ClosedResourceError` (`_failed`). (Asking the socket, and
        checking, cost a call per read and write.)"""
        self._shut_wr = False
        self.send_timeout = send_timeout
        self.received = 0
        self.sent = 0
        """Bytes through this socket so far (TLS records included): the request log's counts."""
        self._peer = peer
        self._on_close: Callable[[], None] | None = None
        self._waiting = 0
        """Tasks waiting for the socket to be readable or writable (see `close_socket`)."""

    def peer_ip(self) -> str:
        """The peer's IP address ("" if the socket cannot tell: it was reset meanwhile)."""
        if self._peer is None:
            try:
                self._peer = str(self.socket.getpeername()[0])
            except OSError:
                self._peer = ""
        return self._peer

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call `callback` once, when this stream closes (however it closes: every stream over
        it, TLS included, closes it in the end). A connection's count per client ends here."""
        self._on_close = callback

    def close_socket(self) -> None:
        """Close at once (`aclose` without its checkpoint).

        When no task waits on the socket (every wait goes through this stream, which counts
        them), it just closes: the kernel drops a closed descriptor from epoll by itself, and
        trio keeps nothing for a descriptor nobody waits on. Telling trio first
        (`notify_closing`, which wakes the waiting tasks with `ClosedResourceError` and removes
        the descriptor from epoll: one `epoll_ctl` more) is needed only when a task waits."""
        callback, self._on_close = self._on_close, None
        if callback is not None:
            callback()
        if self._waiting and self.fd != -1:
            trio.lowlevel.notify_closing(self.socket)
        self.fd = -1
        self.socket.close()

    async def aclose(self) -> None:
        self.close_socket()  # trio's `SocketStream.aclose`, without two calls through
        await trio.lowlevel.checkpoint()

    def _fd(self) -> int:
        fd = self.fd
        if fd == -1:
            raise trio.ClosedResourceError("the socket was closed")
        return fd

    def _failed(self, error: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
        """What a failed read or write raises: `ClosedResourceError` on a closed stream (its
        descriptor is -1: EBADF), as trio's stream raises, else `BrokenResourceError`."""
        if self.fd == -1:
            return trio.ClosedResourceError("the socket was closed")
        return trio.BrokenResourceError(str(error))

    def receive_ready(self) -> bytes | None:
        """What the socket holds already, without waiting (b"": the peer's end of file); None
        when it holds nothing yet. (A TLS client hello is often there by the time its
        connection's task starts: reading it at once saves a wait and a scheduler trip.)"""
        try:
            data = os.read(self._fd(), READ_SIZE)
        except BlockingIOError:
            return None
        except OSError as error:
            raise trio.BrokenResourceError(str(error)) from error
        self.received += len(data)
        return data

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await checkpoint()  # (see the module docstring: the answer often arrives meanwhile)
        size = max_bytes or READ_SIZE
        while True:
            try:
                data = os.read(self.fd, size)
            except BlockingIOError:
                try:
                    await self._wait(wait_readable)
                except OSError as error:
                    raise trio.BrokenResourceError(str(error)) from error
                continue
            except OSError as error:
                raise self._failed(error) from error
            self.received += len(data)
            return data

    async def receive_awaited(self) -> bytes:
        """`receive_some` for what the peer sends only once it has worked on what it received
        (a TLS client's next handshake flight, after its key exchange and certificate checks),
        or what a failed `receive_ready` just found missing: wait for readability first (the
        checkpoint) rather than yield, read in vain and then wait, as `receive_some` mostly
        does here: one trip to the scheduler and one failed read fewer. (Measured alone: a wait
        on a new socket costs ~11.5 µs with trio's three `epoll_ctl`, against ~16.6 for the
        yield, the failed read and the wait, and ~5.9 when the data came during the yield: a
        gain while that read fails more than about half the time; it failed 56-79% of the time
        in the handshakes of cpu_per_request on a loaded 2-core machine.)"""
        while True:
            try:
                await self._wait(wait_readable)
                data = os.read(self._fd(), READ_SIZE)
            except BlockingIOError:
                continue
            except OSError as error:
                raise trio.BrokenResourceError(str(error)) from error
            self.received += len(data)
            return data

    def send_now(self, data: bytes | bytearray | memoryview) -> int:
        """What of `data` the socket takes at once, with no wait and no coroutine: how many
        bytes (0: its buffer is full). Fails as `send_all` does. A small message goes out
        whole in one write (`http.Channel.send_at_once`)."""
        if self._shut_wr:
            raise trio.ClosedResourceError("can't send data after sending EOF")
        try:
            sent = os.write(self.fd, data)
        except BlockingIOError:
            return 0
        except OSError as error:
            raise self._failed(error) from error
        self.sent += sent
        return sent

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sent = self.send_now(data)  # (no view, no slice: nearly always all of it)
        if sent == len(data):
            return
        fd = self.fd
        with memoryview(data) as view:
            while sent < len(view):
                try:
                    written = os.write(fd, view[sent:])
                except BlockingIOError:
                    await self._wait_writable()
                    fd = self.fd
                    continue
                except OSError as error:
                    raise self._failed(error) from error
                sent += written
                self.sent += written

    async def wait_send_all_might_not_block(self) -> None:
        try:
            await self._wait(wait_writable)
        except OSError as error:
            raise trio.BrokenResourceError(str(error)) from error

    async def send_eof(self) -> None:
        await checkpoint()
        self._fd()  # a closed socket: ClosedResourceError, as trio's stream raises
        if self._shut_wr:
            return
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError as error:
            raise trio.BrokenResourceError(str(error)) from error
        self._shut_wr = True

    async def _wait(self, wait: Callable[[int], Awaitable[None]]) -> None:
        """`wait` for the socket (given by its number: trio need not ask for it), counted."""
        self._waiting += 1
        try:
            await wait(self._fd())
        finally:
            self._waiting -= 1

    async def _wait_writable(self) -> None:
        with trio.move_on_after(self.send_timeout) as waited:
            await self._wait(wait_writable)
        if waited.cancelled_caught:
            raise trio.BrokenResourceError(f"the peer took nothing for {self.send_timeout:g}s")
