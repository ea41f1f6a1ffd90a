"""A TLS stream for the proxy's hot path: over trio's `SSLStream` once its handshake is done,
with a shorter way for the common case.

trio's `SSLStream` runs every read and write through one general loop (`_retry`) built for any
mix of tasks, handshakes and renegotiations: each one takes an internal lock with a checkpoint,
so every TLS read and write costs an extra trip through the scheduler (about a third of the
gateway's CPU per HTTPS request on keep-alive connections). Here `receive_some` and `send_all`
first try the common case inline: the handshake is done, the stream is healthy, and no other
task holds the inner lock of that direction (taken without waiting). Then a read is: decrypt
what the incoming buffer holds, else one read from the transport (the checkpoint); a write is:
encrypt, then one write to the transport, with the session tickets trio held back after the
handshake.
Anything else — the handshake, a lock another task holds, a write that makes OpenSSL want to
read — goes to trio's own loop, unchanged; what a read makes OpenSSL write (a key update) is
sent in turn, as trio's loop does.

`handshake` does a server's handshake the short way too: read, let OpenSSL answer, send its
whole flight in one write, until done — two calls into OpenSSL for a TLS 1.3 handshake where
trio's loop makes four (each failing one raises), and no lock or extra checkpoint per step. As
trio does, the TLS 1.3 session tickets are held back to go out with the first response, and a
refused handshake leaves OpenSSL's alert in the outgoing buffer (the dispatcher sends it).

trio's `SSLStream` cannot be subclassed, so this wraps one (`tls`, also `transport_stream`, the
layer below, as the request log's byte counts look for) and reads its private state (the SSL
object, its memory buffers, the inner locks and the delayed tickets); trio is pinned in
uv.lock, and `tests/test_https.py` and the TLS tests of the data plane run through both ways.
"""

from __future__ import annotations

import ssl

import trio
from trio._ssl import _is_eof, _State  # private: see the module docstring

from oauthproxy.proxy.http import READ_SIZE
from oauthproxy.proxy.sockets import LeanSocketStream

_OK, _BROKEN, _CLOSED = _State.OK, _State.BROKEN, _State.CLOSED
_FAILED = (ssl.SSLError, ssl.CertificateError)


async def handshake(tls: trio.SSLStream[trio.abc.Stream]) -> None:
    """The server side of `tls`'s handshake (instead of `tls.do_handshake()`; see the module
    docstring). Raises `trio.BrokenResourceError` if it fails, leaving `tls` broken."""
    ssl_object, incoming, outgoing = tls._ssl_object, tls._incoming, tls._outgoing
    transport = tls.transport_stream
    ready = transport.receive_ready if isinstance(transport, LeanSocketStream) else None
    try:
        # the client hello, if it is there already (else the first wait below)
        chunk: bytes | bytearray | None = ready() if ready is not None else None
        while True:
            if chunk is None:
                chunk = await transport.receive_some()  # the client speaks first
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
                raise trio.BrokenResourceError from error
            break
        if outgoing.pending:
            if ssl_object.version() == "TLSv1.3":
                tls._delayed_outgoing = outgoing.read()  # the session tickets, as trio does
            else:
                await transport.send_all(outgoing.read())  # TLS 1.2: the server's Finished
    except BaseException:
        tls._state = _BROKEN
        raise
    once = tls._handshook  # what `do_handshake` would leave: done
    once.started = True
    once._done.set()


class LeanTLSStream(trio.abc.Stream):
    """See the module docstring. Built once `tls` has done its handshake."""

    def __init__(self, tls: trio.SSLStream[trio.abc.Stream]) -> None:
        self.tls = self.transport_stream = tls

    async def wait_send_all_might_not_block(self) -> None:
        await self.tls.wait_send_all_might_not_block()

    def close_now(self) -> bool:
        """Close at once, with no checkpoint, when nothing is to be waited for (see
        `close_gently`): an HTTPS-compatible stream sends no close_notify, and the TCP stream
        below closes its socket. False (nothing done) over any other transport."""
        tls = self.tls
        transport = tls.transport_stream
        if not (tls._https_compatible and isinstance(transport, LeanSocketStream)):
            return False
        tls._state = _CLOSED
        transport.close_socket()
        return True

    async def aclose(self) -> None:
        await self.tls.aclose()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        tls = self.tls
        recv_lock = tls._inner_recv_lock
        if tls._state is not _OK or not tls._handshook.done or recv_lock.locked():
            return await tls.receive_some(max_bytes)
        with tls._outer_recv_conflict_detector:
            ssl_object, incoming = tls._ssl_object, tls._incoming
            size = max_bytes or READ_SIZE
            waited = False
            while True:
                try:
                    data = ssl_object.read(size)
                except ssl.SSLWantReadError:
                    data = None
                except _FAILED as error:
                    tls._state = _BROKEN
                    if tls._https_compatible and (
                        isinstance(error, ssl.SSLSyscallError) or _is_eof(error)
                    ):
                        await trio.lowlevel.checkpoint()
                        return b""
                    raise trio.BrokenResourceError from error
                if tls._outgoing.pending:  # reading made OpenSSL write (a key update)
                    await self._send_in_turn(tls._outgoing.read())
                    waited = True
                if data is not None:
                    if not waited:
                        await trio.lowlevel.checkpoint()
                    return data
                if recv_lock.locked():  # taken while we sent: trio's loop from here
                    break
                recv_lock.acquire_nowait()
                try:
                    chunk = await tls.transport_stream.receive_some()
                finally:
                    recv_lock.release()
                waited = True
                tls._inner_recv_count += 1
                if not chunk:
                    incoming.write_eof()
                else:
                    incoming.write(chunk)
        return await tls.receive_some(max_bytes)

    async def _send_in_turn(self, encrypted: bytes) -> None:
        """Send what OpenSSL wrote, after every send already waiting (as trio's loop does)."""
        tls = self.tls
        async with tls._inner_send_lock:
            delayed = tls._delayed_outgoing
            if delayed is not None:
                encrypted = delayed + encrypted
                tls._delayed_outgoing = None
            try:
                await tls.transport_stream.send_all(encrypted)
            except BaseException:
                tls._state = _BROKEN  # an unknown part of it went out
                raise

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        tls = self.tls
        send_lock = tls._inner_send_lock
        if tls._state is not _OK or not tls._handshook.done or not data or send_lock.locked():
            await tls.send_all(data)
            return
        with tls._outer_send_conflict_detector:
            try:
                tls._ssl_object.write(data)
            except ssl.SSLWantReadError:
                pass  # nothing was taken: trio's loop writes it again
            except _FAILED as error:
                tls._state = _BROKEN
                raise trio.BrokenResourceError from error
            else:
                encrypted = tls._outgoing.read()
                delayed = tls._delayed_outgoing
                if delayed is not None:  # the session tickets, held back after the handshake
                    encrypted = delayed + encrypted
                    tls._delayed_outgoing = None
                send_lock.acquire_nowait()  # free: checked above, and no await since
                try:
                    await tls.transport_stream.send_all(encrypted)
                except BaseException:
                    tls._state = _BROKEN  # an unknown part of it went out
                    raise
                finally:
                    send_lock.release()
                return
        await tls.send_all(data)
