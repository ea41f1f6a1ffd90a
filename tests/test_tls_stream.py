"""`ServerTLSStream`, the server side of the HTTPS port's TLS, against real OpenSSL clients over
real sockets: a key update the client asks to be answered, close_notify, the transport's end in
the middle of a record, garbage instead of a client hello, the session tickets, and TLS 1.2.

The server is an echo loop (upper-cased) on a `ServerTLSStream` over the `LeanSocketStream` the
dispatcher gives it, with the listener's context and its SNI callback (`tls.py`).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import pytest
import trio
import trio.testing

from oauthproxy.certificates.self_signed import make_self_signed
from oauthproxy.proxy.sockets import LeanSocketStream
from oauthproxy.proxy.tls import HostContext, host_context, listener_context
from oauthproxy.proxy.tls_stream import ServerTLSStream

NAME = "tls.example.com"


@pytest.fixture(scope="module")
def served() -> HostContext:
    issued = make_self_signed([NAME], cn=NAME, days=1, key_bits=2048, key_type="ecdsa-p256")
    return host_context(NAME, issued.fullchain_pem, issued.private_key_pem)


@dataclass
class Outcome:
    """What the server saw on its one connection."""

    received: list[bytes] = field(default_factory=list)
    ended: str = ""
    """"eof" (receive_some returned b""), else the error that ended it."""
    refusal: bytes = b""
    """What OpenSSL wrote for a refused handshake (its alert)."""
    done: trio.Event = field(default_factory=trio.Event)


@asynccontextmanager
async def echo_server(context: HostContext) -> AsyncIterator[tuple[int, Outcome]]:
    """A port whose first connection is served by the echo loop; what it saw."""
    listening = listener_context(lambda name: context if name == NAME else None)
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    outcome = Outcome()

    async def serve() -> None:
        tcp = await listener.accept()
        stream = ServerTLSStream(LeanSocketStream(tcp.socket), listening)
        try:
            await stream.do_handshake()
            while data := await stream.receive_some():
                outcome.received.append(bytes(data))
                await stream.send_all(bytes(data).upper())
            outcome.ended = "eof"
        except trio.BrokenResourceError as error:
            outcome.ended = f"broken: {error}"
            outcome.refusal = stream.refusal()
        finally:
            await stream.aclose()
            outcome.done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        yield listener.socket.getsockname()[1], outcome
        with trio.fail_after(10):
            await outcome.done.wait()
        await listener.aclose()


def client_context(maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED) -> ssl.SSLContext:
    """A client for the self-signed certificate (what is checked here is the stream, not it)."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.maximum_version = maximum
    return client


class RecordClient:
    """A TLS client whose records the test sends itself: an `ssl.SSLObject` between memory
    buffers over a blocking socket (run in a thread)."""

    def __init__(
        self, port: int, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3, first: bytes = b""
    ) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        context = client_context(version)
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=NAME)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.socket.sendall(self.outgoing.read())
                self.incoming.write(self.socket.recv(65536))
        finished = self.outgoing.read()
        self.socket.sendall(finished + (self.record(first) if first else b""))  # one write

    def record(self, data: bytes) -> bytes:
        self.tls.write(data)
        return self.outgoing.read()

    def ask(self, data: bytes) -> bytes:
        """Send `data` in one record; the first record that comes back, decrypted."""
        self.socket.sendall(self.record(data))
        while True:
            try:
                return self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.incoming.write(self.socket.recv(65536))

    def close_notify(self) -> None:
        with contextlib.suppress(ssl.SSLWantReadError):  # (the server sends none back)
            self.tls.unwrap()
        self.socket.sendall(self.outgoing.read())

    def read_to_end(self) -> bytes:
        """Everything the server sends until it closes, decrypted."""
        plain = b""
        while chunk := self.socket.recv(65536):
            self.incoming.write(chunk)
            try:
                while data := self.tls.read(65536):
                    plain += data
            except ssl.SSLWantReadError:
                pass
        self.socket.close()
        return plain


async def test_the_end_of_the_transport_in_the_middle_of_a_record_ends_the_stream(
    served: HostContext,
) -> None:
    """HTTPS-compatible: the end of file without close_notify, even within a record, is the
    end of the stream (b""), after everything whole that came before it."""
    async with echo_server(served) as (port, outcome):

        def client() -> bytes:
            tls = RecordClient(port)
            whole, cut = tls.record(b"whole\n"), tls.record(b"cut short\n")
            tls.socket.sendall(whole + cut[:-4])
            tls.socket.shutdown(socket.SHUT_WR)
            return tls.read_to_end()

        answered = await trio.to_thread.run_sync(client)
    assert answered == b"WHOLE\n"
    assert outcome.received == [b"whole\n"]
    assert outcome.ended == "eof"


async def test_garbage_instead_of_a_client_hello_fails_the_handshake_with_an_alert(
    served: HostContext,
) -> None:
    async with echo_server(served) as (port, outcome):

        def client() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.sendall(b"\x16\x03\x01\x00\x08" + b"\xff" * 8)  # a handshake record of junk
                while raw.recv(65536):
                    pass

        await trio.to_thread.run_sync(client)
    assert outcome.ended.startswith("broken")
    assert outcome.refusal[:1] == b"\x15"  # an alert record, for the dispatcher to send
    assert outcome.received == []


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_requests_and_close_notify(served: HostContext, version: ssl.TLSVersion) -> None:
    """A client sends twice, reads each echo, then says close_notify: the end of the stream."""
    async with echo_server(served) as (port, outcome):

        def client() -> tuple[bytes, bytes, str | None, bytes]:
            tls = RecordClient(port, version)
            first, second = tls.ask(b"one\n"), tls.ask(b"two\n")
            tls.close_notify()
            return first, second, tls.tls.version(), tls.read_to_end()

        first, second, negotiated, rest = await trio.to_thread.run_sync(client)
    assert (first, second, rest) == (b"ONE\n", b"TWO\n", b"")
    assert negotiated == ("TLSv1.2" if version is ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
    assert outcome.received == [b"one\n", b"two\n"]
    assert outcome.ended == "eof"


class SClient:
    """`openssl s_client` against the echo server: what it is told on its input, and all it
    has printed so far (stdout and stderr: where it says KEYUPDATE or names an alert)."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stdin = process.stdin
        self.stdout = process.stdout
        self.seen = b""

    async def read_until(self, text: bytes) -> None:
        with trio.fail_after(10):
            while text not in self.seen:
                chunk = await self.stdout.receive_some()
                assert chunk, self.seen
                self.seen += chunk

    async def read_to_end(self) -> None:
        with trio.fail_after(10):
            while chunk := await self.stdout.receive_some():
                self.seen += chunk


@asynccontextmanager
async def s_client(port: int, version: str) -> AsyncIterator[SClient]:
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", NAME]
    process = await trio.lowlevel.open_process(
        [*command, version],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield SClient(process)
    finally:
        process.kill()
        await process.wait()


async def test_a_key_update_the_client_asks_to_be_answered_is_answered(
    served: HostContext,
) -> None:
    """`openssl s_client` sends a KeyUpdate that asks for the server's ("K"), then data: the
    server's KeyUpdate (which OpenSSL writes with the next record) must go out before its echo,
    encrypted with its new keys, or the client could not read the echo."""
    async with echo_server(served) as (port, outcome), s_client(port, "-tls1_3") as client:
        await client.stdin.send_all(b"before\n")
        await client.read_until(b"BEFORE")
        await client.stdin.send_all(b"K\n")  # (s_client takes each read of its input whole)
        await client.read_until(b"KEYUPDATE")
        await client.stdin.send_all(b"after\n")
        await client.read_until(b"AFTER")
        await client.stdin.aclose()  # s_client says close_notify and ends
        await client.process.wait()
    assert outcome.received == [b"before\n", b"after\n"]
    assert outcome.ended == "eof"


async def test_one_session_ticket_per_handshake(served: HostContext) -> None:
    """A TLS 1.3 client gets one session ticket (OpenSSL's default is two, Go's one), with the
    first response."""
    async with echo_server(served) as (port, outcome), s_client(port, "-tls1_3") as client:
        await client.stdin.send_all(b"hello\n")
        await client.read_until(b"HELLO")
        await client.stdin.aclose()
        await client.read_to_end()
    assert client.seen.count(b"New Session Ticket arrived") == 1, client.seen
    assert outcome.received == [b"hello\n"]


async def test_a_tls12_renegotiation_is_refused_with_an_alert(served: HostContext) -> None:
    """`openssl s_client -tls1_2` asks to renegotiate ("R"): the server's read answers with the
    no_renegotiation alert (sent by the read, as nothing else is sent), and the client gives up."""
    async with echo_server(served) as (port, outcome), s_client(port, "-tls1_2") as client:
        await client.stdin.send_all(b"R\n")
        await client.read_to_end()
    assert b"no renegotiation" in client.seen
    assert outcome.received == []
    assert outcome.ended.startswith("broken")  # the client's own alert, once it gave up


async def test_sends_that_wait_for_each_other_all_go_out_in_order(served: HostContext) -> None:
    """Sends made at once over a transport whose sends block until the peer reads (lockstep):
    the first sends, the others wait their turn; all go out whole and in the order they were
    made, one that is cancelled while it waits leaves the others their turns, and the turn
    ends with the last (a later send goes out at once)."""
    listening = listener_context(lambda name: served if name == NAME else None)
    server_side, client_side = trio.testing.lockstep_stream_pair()
    server = ServerTLSStream(server_side, listening)
    client = trio.SSLStream(client_side, client_context(), server_hostname=NAME)
    first, second, third = (bytes([letter]) * 50_000 for letter in b"ABC")
    waiting = trio.CancelScope()

    async def cancelled_send() -> None:
        with waiting:
            await server.send_all(b"cancelled while it waited")

    async def receive(size: int) -> bytes:
        received = b""
        while len(received) < size:
            received += await client.receive_some()
        return received

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            await client.do_handshake()
        async with trio.open_nursery() as nursery:
            for send in (partial(server.send_all, first), partial(server.send_all, second)):
                nursery.start_soon(send)
                await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(cancelled_send)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(server.send_all, third)
            await trio.testing.wait_all_tasks_blocked()
            waiting.cancel()
            # (what a cancelled send gave OpenSSL was encrypted already: it goes out in turn)
            expected = first + second + b"cancelled while it waited" + third
            assert await receive(len(expected)) == expected
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.send_all, b"later")
            assert await receive(5) == b"later"
    assert waiting.cancelled_caught


async def test_the_request_that_came_with_the_finished_is_read_without_a_second_checkpoint(
    served: HostContext,
) -> None:
    """The client's Finished and its first request arrive together: the handshake's read of
    them was the checkpoint, so the first receive is none; every later one is one."""
    listening = listener_context(lambda name: served if name == NAME else None)
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    received: list[bytes] = []

    def client() -> None:
        tls = RecordClient(port, first=b"first\n")
        tls.socket.sendall(tls.record(b"second\n"))
        tls.socket.shutdown(socket.SHUT_WR)
        tls.read_to_end()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, client)
        tcp = await listener.accept()
        stream = ServerTLSStream(LeanSocketStream(tcp.socket), listening)
        with trio.fail_after(10):
            await stream.do_handshake()
        with trio.testing.assert_no_checkpoints():
            received.append(bytes(await stream.receive_some()))
        with trio.fail_after(10):
            while True:
                with trio.testing.assert_checkpoints():
                    data = await stream.receive_some()
                if not data:
                    break
                received.append(bytes(data))
        await stream.aclose()
        await listener.aclose()
    assert b"".join(received) == b"first\nsecond\n"
