"""The server side of a TLS connection on the public HTTPS port: an `ssl.SSLObject` between two
memory buffers, over the TCP stream (or the PROXY protocol's prefixed stream) below.

Our own, rather than trio's `SSLStream`, because a new connection is the hot path of the HTTPS
port: trio's stream is built for any mix of tasks, handshakes and renegotiations, so building
one costs ~10-18 µs (locks, conflict detectors, a handshake "once") against ~2 µs for the SSL
object alone, and every read and write goes through one general loop that takes a lock with a
checkpoint. The server side of HTTPS needs much less, and this does only that:

- `do_handshake`: read, let OpenSSL answer, send its whole flight in one write, until done —
  two calls into OpenSSL for a TLS 1.3 handshake. The client hello is read at once when it is
  already there (it often is by the time the connection's task starts). As trio does, the
  TLS 1.3 session tickets are held back to go out with the first response (one write fewer,
  and clients that close at once after the handshake never see a ticket arrive late). A
  refused handshake raises `trio.BrokenResourceError` and leaves OpenSSL's alert for
  `refusal()` (`unrecognized_name` for a name without a certificate: the dispatcher sends it).
- `receive_some`: decrypt what the incoming buffer holds, else read the transport once and
  decrypt again; a checkpoint, except the first one after the handshake (whose own last read of
  the transport was one a moment ago). What a read makes OpenSSL write (an alert, the refusal
  of a renegotiation) is sent at once, or, when a send is under way, by that send before it
  returns (OpenSSL answers a client's key update with the next record sent). close_notify
  ends the stream (b""), and so does the transport's end of file without it, even in the
  middle of a record: HTTPS-compatible, as trio's `https_compatible=True` (an HTTP message
  carries its own length, so a truncation is seen there).
- `send_all`: encrypt, then one write to the transport, behind the session tickets. Sends wait
  for each other, in turn: records leave in OpenSSL's order. The turn is a flag, and a queue
  made only when a send has to wait (a `trio.Lock` cost ~1.2 µs per connection: made for
  each, and every acquire registers its owner task, through `inspect`).
- `aclose` sends no close_notify (HTTPS-compatible: the client learns of the end from the
  response or the TCP close) and closes the transport; `close_now` does so with no checkpoint.

Client-initiated renegotiation (TLS 1.2) is refused by the contexts (`tls.py`), so a write never
has to read first. `send_all` is a checkpoint only when it waits (as `LeanSocketStream.send_all`,
below it: every loop of the data plane receives between sends).
"""

from __future__ import annotations

import enum
import ssl

import trio
from trio.lowlevel import ParkingLot, checkpoint

from oauthproxy.proxy.http import READ_SIZE
from oauthproxy.proxy.sockets import LeanSocketStream

_FAILED = (ssl.SSLError, ssl.CertificateError)


class _State(enum.Enum):
    HANDSHAKE = enum.auto()
    OK = enum.auto()
    BROKEN = enum.auto()
    CLOSED = enum.auto()


_HANDSHAKE, _OK, _BROKEN, _CLOSED = _State


def _is_eof(error: Exception) -> bool:
    """Whether OpenSSL's error is the transport's end of file without close_notify (how it says
    so differs between OpenSSL and Python versions)."""
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLSyscallError)):
        return True
    return "UNEXPECTED_EOF_WHILE_READING" in str(getattr(error, "strerror", "") or "")


class ServerTLSStream(trio.abc.Stream):
    """TLS over `transport` with `context` (the listener's, whose SNI callback may switch it to
    a hostname's); `do_handshake` first, then receive and send (see the module docstring)."""

    def __init__(self, transport: trio.abc.Stream, context: ssl.SSLContext) -> None:
        self.transport_stream = transport
        """The layer below (the request log's byte counts look for it)."""
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._state = _HANDSHAKE
        self._tickets = b""
        """TLS 1.3 session tickets written by the handshake, for the first send."""
        self._receiving = False
        self._sending = False
        """A send (or a read's answer) is writing to the transport: others wait their turn."""
        self._send_queue: ParkingLot | None = None
        """Sends waiting for their turn, in order (made at the first wait)."""
        self._checkpointed = False
        """The handshake just ended with a read of the transport, a checkpoint (see `_receive`)."""

    @property
    def context(self) -> ssl.SSLContext:
        """The context the handshake ended with: after SNI, the hostname's `HostContext`."""
        return self._ssl.context

    def selected_alpn_protocol(self) -> str | None:
        return self._ssl.selected_alpn_protocol()

    def version(self) -> str | None:
        return self._ssl.version()

    async def do_handshake(self) -> None:
        """The server's handshake (once, before anything else). Raises
        `trio.BrokenResourceError` if it fails, leaving the stream broken and OpenSSL's alert,
        if it wrote one, for `refusal()`."""
        if self._state is not _HANDSHAKE:
            raise trio.BrokenResourceError("the handshake was done or tried already")
        ssl_object, incoming, outgoing = self._ssl, self._incoming, self._outgoing
        transport = self.transport_stream
        self._state = _BROKEN  # until it is done
        # the client hello, if it is there already (else the first wait below)
        chunk: bytes | bytearray | None = None
        lean = transport if isinstance(transport, LeanSocketStream) else None
        if lean is not None:
            chunk = lean.receive_ready()
        while True:
            if chunk is None:  # the client speaks first, and answers our flight after its crypto
                chunk = await (transport.receive_some() if lean is None else lean.receive_awaited())
            if chunk:
                incoming.write(chunk)
            else:
                incoming.write_eof()
            chunk = None
            try:
                ssl_object.do_handshake()
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    await transport.send_all(outgoing.read())
                continue
            except _FAILED as error:
                raise trio.BrokenResourceError(str(error)) from error
            break
        if outgoing.pending:
            if ssl_object.version() == "TLSv1.3":
                self._tickets = outgoing.read()
            else:
                await transport.send_all(outgoing.read())  # TLS 1.2: the server's Finished
        self._state = _OK
        self._checkpointed = True  # (the client's hello alone never completes a handshake)

    def refusal(self) -> bytes:
        """What OpenSSL wrote and nobody sent (after a failed handshake: its alert)."""
        return self._outgoing.read()

    def _check(self) -> None:
        if self._state is not _OK:
            if self._state is _CLOSED:
                raise trio.ClosedResourceError("this TLS stream was closed")
            raise trio.BrokenResourceError(
                "no handshake yet" if self._state is _HANDSHAKE else "this TLS stream is broken"
            )

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        self._check()
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this TLS stream")
        self._receiving = True
        try:
            return await self._receive(max_bytes or READ_SIZE)
        finally:
            self._receiving = False

    async def _receive(self, size: int) -> bytes:
        ssl_object, incoming, outgoing = self._ssl, self._incoming, self._outgoing
        # The first receive after the handshake usually decrypts the request that came with
        # the client's Finished: the read of those was the checkpoint, so no second one here
        # (a scheduler trip per connection).
        waited, self._checkpointed = self._checkpointed, False
        while True:
            try:
                data: bytes | None = ssl_object.read(size)  # b"": close_notify
            except ssl.SSLWantReadError:
                data = None
            except _FAILED as error:
                self._state = _BROKEN
                if not _is_eof(error):
                    raise trio.BrokenResourceError(str(error)) from error
                data = b""  # the transport's end of file without close_notify (HTTPS-compatible)
            # a key update's answer, an alert (while a send is under way, it sends them)
            if outgoing.pending and self._state is _OK and not self._sending:
                self._sending = True
                await self._send_turn()
                waited = True
            if data is not None:
                if not waited:
                    await checkpoint()
                return data
            chunk = await self.transport_stream.receive_some()
            waited = True
            if chunk:
                incoming.write(chunk)
            else:
                incoming.write_eof()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check()
        if not data:  # (an SSL object takes an empty write for something else)
            await checkpoint()
            return
        try:
            self._ssl.write(data)
        except _FAILED as error:  # (a write that wants to read first: only a renegotiation)
            self._state = _BROKEN
            raise trio.BrokenResourceError(str(error)) from error
        if self._sending:  # another send, or a read's key update, is under way: after it
            if self._send_queue is None:
                self._send_queue = ParkingLot()
            await self._send_queue.park()  # woken with the turn (see `_send_turn`)
        else:
            self._sending = True
        await self._send_turn()

    async def _send_turn(self) -> None:
        """Send what OpenSSL wrote, holding the turn (`_sending`), then pass the turn to the
        first waiting send, or end it."""
        try:
            await self._send_written()
        finally:
            if self._send_queue:  # (a ParkingLot is true while a task is parked in it)
                self._send_queue.unpark()  # the turn passes on: `_sending` stays set
            else:
                self._sending = False

    async def _send_written(self) -> None:
        """Send what OpenSSL wrote (the session tickets first), and what it writes meanwhile;
        in the send's turn."""
        outgoing = self._outgoing
        encrypted = outgoing.read()
        if self._tickets:
            encrypted, self._tickets = self._tickets + encrypted, b""
        while encrypted:
            try:
                await self.transport_stream.send_all(encrypted)
            except BaseException:
                self._state = _BROKEN  # an unknown part of it went out
                raise
            encrypted = outgoing.read() if outgoing.pending else b""

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    def close_now(self) -> bool:
        """Close at once, with no checkpoint (see `close_gently`): the TCP stream below closes
        its socket. False (nothing done) over any other transport."""
        transport = self.transport_stream
        if not isinstance(transport, LeanSocketStream):
            return False
        self._state = _CLOSED
        transport.close_socket()
        return True

    async def aclose(self) -> None:
        if self._state is _CLOSED:
            await checkpoint()
            return
        self._state = _CLOSED
        await self.transport_stream.aclose()
