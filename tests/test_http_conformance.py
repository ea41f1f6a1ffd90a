"""HTTP/1.1 on the wire through the proxy: the data plane's protocol behaviour, pinned byte by byte.

Every test speaks raw bytes to the gateway's public HTTP port, so it controls exactly what the
gateway receives and checks exactly what comes back: status, headers, the body's exact bytes, and
whether the connection serves a next request or is closed. Upstreams are either the quart backend
(tests/backend.py) or a raw-socket backend defined here, which records every request it receives
(head and de-chunked body) and answers with canned bytes: close-delimited bodies, HTTP/1.0, 1xx
before the final answer, 204/304 with framing headers, hop-by-hop headers, and so on.

These tests exist so that replacing the HTTP/1.1 codec on the hot path cannot change any of this
silently.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio

from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.backend import serve_backend
from tests.eventually import eventually
from tests.test_dataplane import create_proxy

HOST = "wire.example.com"
TIMEOUT = 10
READ_SIZE = 64 * 1024

Headers = list[tuple[bytes, bytes]]


# --- A buffered byte stream, and HTTP/1.1 messages read from it --------------------------------


class Wire:
    """One end of a TCP connection with a read buffer: the test client and the raw backends."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _more(self) -> bool:
        """Read once more into the buffer; False when the peer has closed (or reset)."""
        try:
            data = await self.stream.receive_some(READ_SIZE)
        except trio.BrokenResourceError:
            return False
        self.buffer += data
        return bool(data)

    async def line(self) -> bytes:
        """The next line, without its CRLF."""
        while b"\r\n" not in self.buffer:
            if not await self._more():
                raise EOFError(f"closed in the middle of a line: {self.buffer[:200]!r}")
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    async def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not await self._more():
                raise EOFError(f"closed after {len(self.buffer)} of {size} bytes")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def rest(self) -> bytes:
        """Everything until the peer closes."""
        while await self._more():
            pass
        data, self.buffer = self.buffer, b""
        return data

    async def closed_by_peer(self) -> bool:
        """Whether the peer closed the connection with nothing more to read (waits for either)."""
        if self.buffer:
            return False
        return not await self._more()

    async def head(self) -> list[bytes] | None:
        """A message head's lines (start line first), or None if the peer closed before it."""
        while not self.buffer:
            if not await self._more():
                return None
        lines = [await self.line()]
        while line := await self.line():
            lines.append(line)
        return lines

    async def chunked_body(self) -> bytes:
        """A chunked body, de-chunked (extensions and trailer fields are read and dropped)."""
        body = b""
        while True:
            size_line = await self.line()
            size = int(size_line.partition(b";")[0].strip(), 16)
            if size == 0:
                while await self.line():  # the trailer section, up to its empty line
                    pass
                return body
            body += await self.exactly(size)
            assert await self.line() == b"", "a chunk's data must end with CRLF"


def parse_fields(lines: list[bytes]) -> Headers:
    """Header lines as (lower-case name, value); strict about the name, like a real recipient."""
    fields: Headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        assert colon and name and name == name.strip(), f"malformed header line {line!r}"
        fields.append((name.lower(), value.strip()))
    return fields


def field(fields: Headers, name: bytes) -> bytes | None:
    """The one value of header `name` (None if absent; a repeated header fails the test)."""
    values = [value for key, value in fields if key == name]
    assert len(values) <= 1, f"{name!r} appears {len(values)} times: {values}"
    return values[0] if values else None


class _Fields:
    """Header lookups for a message seen on the wire."""

    headers: Headers

    def header(self, name: bytes) -> bytes | None:
        return field(self.headers, name)

    @property
    def names(self) -> set[bytes]:
        return {name for name, _ in self.headers}


@dataclass(frozen=True)
class Response(_Fields):
    version: bytes
    status: int
    reason: bytes
    headers: Headers
    body: bytes
    framing: str
    """How the body was delimited: "none", "content-length", "chunked" or "close"."""


async def read_response(wire: Wire, *, method: bytes = b"GET") -> Response | None:
    """The next response (1xx included) framed as RFC 9112 section 6.3 says, or None when the
    connection was closed before it started."""
    lines = await wire.head()
    if lines is None:
        return None
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    assert version.startswith(b"HTTP/1."), f"not a status line: {lines[0]!r}"
    status = int(code)
    headers = parse_fields(lines[1:])
    transfer_encoding = field(headers, b"transfer-encoding")
    length = field(headers, b"content-length")
    if method == b"HEAD" or status < 200 or status in (204, 304):
        return Response(version, status, reason, headers, b"", "none")
    if transfer_encoding is not None:
        assert transfer_encoding.lower() == b"chunked", transfer_encoding
        assert length is None, "a response must not carry both Transfer-Encoding and Content-Length"
        body = await wire.chunked_body()
        return Response(version, status, reason, headers, body, "chunked")
    if length is not None:
        body = await wire.exactly(int(length))
        return Response(version, status, reason, headers, body, "content-length")
    return Response(version, status, reason, headers, await wire.rest(), "close")


async def response(wire: Wire, *, method: bytes = b"GET") -> Response:
    """The next final response, after any 1xx; the connection must not close before it."""
    while True:
        answer = await read_response(wire, method=method)
        assert answer is not None, "the gateway closed the connection without a response"
        if answer.status >= 200:
            return answer


def request(start: str, *headers: str, body: bytes = b"", host: str = HOST) -> bytes:
    """A request's bytes: the start line, a Host header, then `headers` ("Name: value")."""
    lines = [start, f"Host: {host}", *headers]
    return "".join(f"{line}\r\n" for line in lines).encode() + b"\r\n" + body


@asynccontextmanager
async def client(gateway: Ready) -> AsyncIterator[Wire]:
    """A fresh client connection to the gateway's public HTTP port."""
    stream = await trio.open_tcp_stream("127.0.0.1", gateway.http_port)
    async with stream:
        yield Wire(stream)


async def exchange(gateway: Ready, data: bytes) -> Response:
    """Send `data` on a new connection and read the final response."""
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(data)
            return await response(wire)


# --- A raw upstream: records what arrives, answers with canned bytes ----------------------------


@dataclass(frozen=True)
class Received(_Fields):
    """A request as it reached the upstream (the body de-chunked if it came chunked)."""

    connection: int
    """Which upstream connection carried it (numbered from 1 in order of accept)."""
    method: bytes
    target: bytes
    version: bytes
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class Answer:
    """Canned response bytes, written in `parts` (a short pause between them, so they tend to
    arrive in separate reads); with `close`, the backend closes the connection afterwards."""

    parts: tuple[bytes, ...]
    close: bool = False


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def serve_raw(
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    task_status: trio.TaskStatus[int],
) -> None:
    """Serve `handler` on a free loopback port (started with it) until cancelled."""
    async with trio.open_nursery() as nursery:
        listeners: list[trio.SocketListener] = await nursery.start(
            functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
        )
        task_status.started(int(listeners[0].socket.getsockname()[1]))


class RawBackend:
    """An HTTP/1.1 upstream on raw sockets. Requests to a target in `answers` get that answer;
    any other target gets a 200 whose body is `target <target>`.

    With `trust_content_length`, a request carrying both Content-Length and Transfer-Encoding is
    framed by Content-Length: the behaviour of a naive server that request smuggling exploits.
    """

    def __init__(
        self, answers: Mapping[bytes, Answer] | None = None, *, trust_content_length: bool = False
    ) -> None:
        self.answers = dict(answers or {})
        self.trust_content_length = trust_content_length
        self.received: list[Received] = []
        self.junk: list[bytes] = []
        """Start lines that were not requests (the backend closed those connections)."""
        self.accepted = 0
        self.port = 0
        self._open = 0
        self._idle = trio.Event()
        self._idle.set()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            listeners: list[trio.SocketListener] = await nursery.start(
                functools.partial(trio.serve_tcp, self._connection, 0, host="127.0.0.1")
            )
            self.port = int(listeners[0].socket.getsockname()[1])
            task_status.started(self.port)

    async def all_closed(self) -> None:
        """Wait until every connection to this backend has been closed."""
        with trio.fail_after(TIMEOUT):
            while not self._idle.is_set():
                await self._idle.wait()

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.accepted += 1
        number = self.accepted
        self._open += 1
        if self._idle.is_set():
            self._idle = trio.Event()
        try:
            async with stream:
                wire = Wire(stream)
                while (received := await self._read(wire, number)) is not None:
                    self.received.append(received)
                    answer = self.answers.get(
                        received.target, Answer((ok(b"target " + received.target),))
                    )
                    for index, part in enumerate(answer.parts):
                        if index:
                            await trio.sleep(0.01)
                        await wire.send(part)
                    if answer.close:
                        return
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._open -= 1
            if not self._open:
                self._idle.set()

    async def _read(self, wire: Wire, connection: int) -> Received | None:
        lines = await wire.head()
        while lines == [b""]:  # a stray CRLF before a request line is to be ignored
            lines = await wire.head()
        if lines is None:
            return None
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            self.junk.append(lines[0])
            return None
        method, target, version = parts
        headers = parse_fields(lines[1:])
        length = field(headers, b"content-length")
        chunked = (field(headers, b"transfer-encoding") or b"").lower() == b"chunked"
        if chunked and not (self.trust_content_length and length is not None):
            body = await wire.chunked_body()
        else:
            body = await wire.exactly(int(length or b"0"))
        return Received(connection, method, target, version, headers, body)


async def until_served(gateway: Ready) -> None:
    """Wait until the gateway forwards requests for HOST (a new proxy takes milliseconds)."""

    async def known() -> bool:
        answer = await exchange(gateway, request("GET /ready HTTP/1.1", "Connection: close"))
        return b"unknown_host" not in answer.body

    await eventually(known, what=f"{HOST} known", within=TIMEOUT)


async def raw_upstream(
    nursery: trio.Nursery,
    storage: Storage,
    gateway: Ready,
    answers: Mapping[bytes, Answer] | None = None,
    *,
    trust_content_length: bool = False,
) -> RawBackend:
    """A raw backend behind a proxy for HOST, served, with the readiness requests forgotten."""
    backend = RawBackend(answers, trust_content_length=trust_content_length)
    await nursery.start(backend.serve)
    await create_proxy(storage, HOST, backend.port)
    await until_served(gateway)
    backend.received.clear()
    return backend


@pytest.fixture
async def quart_upstream(nursery: trio.Nursery, storage: Storage, gateway: Ready) -> None:
    """The quart backend (tests/backend.py) behind a proxy for HOST, served."""
    port: int = await nursery.start(functools.partial(serve_backend, "quart"))
    await create_proxy(storage, HOST, port)
    await until_served(gateway)


def echoed(answer: Response) -> dict[str, object]:
    """The quart backend's /echo report of the request it received."""
    assert answer.status == 200, answer
    report: dict[str, object] = json.loads(answer.body)
    return report


# --- Request side ------------------------------------------------------------------------------


async def test_head_keeps_content_length_sends_no_body_and_the_connection_serves_on(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    head_answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n"
    backend = await raw_upstream(nursery, storage, gateway, {b"/doc": Answer((head_answer,))})
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("HEAD /doc HTTP/1.1"))
            head = await response(wire, method=b"HEAD")
            await wire.send(request("GET /next HTTP/1.1"))
            after = await response(wire)
    assert head.status == 200
    assert head.header(b"content-length") == b"1234"
    assert head.header(b"content-type") == b"text/plain"
    assert head.body == b""
    # had any body bytes followed the HEAD answer, they would be read as this status line
    assert (after.status, after.body) == (200, b"target /next")
    assert [(r.method, r.target) for r in backend.received] == [
        (b"HEAD", b"/doc"),
        (b"GET", b"/next"),
    ]


async def test_head_answered_by_the_gateway_itself_has_no_body(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    await raw_upstream(nursery, storage, gateway)
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:  # a 404 for an unknown host, from the dispatcher
            await wire.send(request("HEAD / HTTP/1.1", host="unknown.example.com"))
            unknown = await response(wire, method=b"HEAD")
            assert await wire.closed_by_peer(), "bytes followed the HEAD answer"
        async with client(gateway) as wire:  # the same, for a kept-alive connection's next host
            await wire.send(request("HEAD /doc HTTP/1.1"))
            await response(wire, method=b"HEAD")
            await wire.send(request("HEAD /doc HTTP/1.1", host="other.example.com"))
            unknown_next = await response(wire, method=b"HEAD")
            assert await wire.closed_by_peer(), "bytes followed the HEAD answer"
    assert unknown.status == 404 and int(unknown.header(b"content-length") or 0) > 0
    assert unknown_next.status == 404 and int(unknown_next.header(b"content-length") or 0) > 0


async def test_http10_request_is_answered_then_the_connection_closed(
    quart_upstream: None, gateway: Ready
) -> None:
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /echo/old HTTP/1.0"))
            answer = await response(wire)
            closed = await wire.closed_by_peer()
    report = echoed(answer)
    assert report["path"] == "/echo/old"
    assert answer.framing == "content-length"  # an HTTP/1.0 client cannot read chunked
    assert closed


async def test_http10_keep_alive_request_gets_a_correct_response(
    quart_upstream: None, gateway: Ready
) -> None:
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /echo/kept HTTP/1.0", "Connection: keep-alive"))
            answer = await response(wire)
    assert echoed(answer)["path"] == "/echo/kept"
    assert answer.framing != "chunked"


async def test_http10_client_never_gets_a_chunked_response(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    await raw_upstream(nursery, storage, gateway, {b"/chunked": Answer((chunked,))})
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /chunked HTTP/1.0"))
            answer = await response(wire)
            closed = await wire.closed_by_peer()
    assert answer.status == 200
    assert answer.header(b"transfer-encoding") is None
    assert answer.framing in ("close", "content-length")
    assert answer.body == b"hello world"
    assert closed


async def test_chunked_request_body_arrives_intact(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    pieces = [b"first piece|", b"x" * 70_000, b"|" + bytes(range(256)), b"|last"]
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("POST /upload HTTP/1.1", "Transfer-Encoding: chunked"))
            for index, piece in enumerate(pieces):
                extension = b";note=yes" if index == 1 else b""
                await wire.send(b"%x%s\r\n%s\r\n" % (len(piece), extension, piece))
                await trio.sleep(0.01)
            await wire.send(b"0\r\nX-Checksum: none\r\n\r\n")
            answer = await response(wire)
            await wire.send(request("GET /next HTTP/1.1"))
            after = await response(wire)
    assert (answer.status, answer.body) == (200, b"target /upload")
    assert (after.status, after.body) == (200, b"target /next")
    [upload, _] = backend.received
    assert upload.body == b"".join(pieces)
    framing = (upload.header(b"transfer-encoding"), upload.header(b"content-length"))
    assert framing in ((b"chunked", None), (None, str(len(upload.body)).encode()))


async def test_expect_100_continue_is_answered_before_the_body_and_not_forwarded(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    body = b"the body, sent only after 100 Continue"
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(
                request(
                    "POST /expect HTTP/1.1",
                    f"Content-Length: {len(body)}",
                    "Expect: 100-continue",
                )
            )
            interim = await read_response(wire)
            await wire.send(body)
            final = await response(wire)
    assert interim is not None
    assert (interim.version, interim.status, interim.body) == (b"HTTP/1.1", 100, b"")
    assert (final.status, final.body) == (200, b"target /expect")
    [received] = backend.received
    assert received.body == body
    assert b"expect" not in received.names


async def test_pipelined_requests_are_answered_in_order(
    quart_upstream: None, gateway: Ready
) -> None:
    pipelined = (
        request("GET /echo/one HTTP/1.1")
        + request("POST /echo/two HTTP/1.1", "Content-Length: 5", body=b"hello")
        + request("GET /echo/three HTTP/1.1")
    )
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(pipelined)
            answers = [await response(wire) for _ in range(3)]
    reports = [echoed(answer) for answer in answers]
    assert [(r["method"], r["path"], r["body"]) for r in reports] == [
        ("GET", "/echo/one", ""),
        ("POST", "/echo/two", "hello"),
        ("GET", "/echo/three", ""),
    ]


async def test_two_posts_on_one_connection_both_arrive_intact(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    bodies = [bytes(range(256)) * 3, b"\r\n\r\nGET /not-a-request HTTP/1.1\r\n\r\n"]
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            answers = []
            for number, body in enumerate(bodies, 1):
                start = f"POST /post/{number} HTTP/1.1"
                await wire.send(request(start, f"Content-Length: {len(body)}", body=body))
                answers.append(await response(wire))
    assert [(a.status, a.body) for a in answers] == [
        (200, b"target /post/1"),
        (200, b"target /post/2"),
    ]
    assert [(r.target, r.body) for r in backend.received] == [
        (b"/post/1", bodies[0]),
        (b"/post/2", bodies[1]),
    ]
    lengths = [str(len(body)).encode() for body in bodies]
    assert [r.header(b"content-length") for r in backend.received] == lengths
    assert backend.junk == []


async def test_hop_by_hop_request_headers_are_not_forwarded(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    answer = await exchange(
        gateway,
        request(
            "GET /hops HTTP/1.1",
            "Connection: X-Client-Secret",
            "Connection: keep-alive",  # every line's options count, not only the last's
            "X-Client-Secret: 1",
            "Keep-Alive: timeout=5",
            "TE: trailers",
            "Proxy-Authorization: Basic c2VjcmV0",
            "X-End-To-End: kept",
        ),
    )
    assert answer.status == 200
    [received] = backend.received
    hop_by_hop = {b"x-client-secret", b"keep-alive", b"te", b"proxy-authorization"}
    assert received.names & hop_by_hop == set()
    assert b"x-client-secret" not in (received.header(b"connection") or b"").lower()
    assert received.header(b"x-end-to-end") == b"kept"


async def test_a_large_but_reasonable_request_head_is_forwarded(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    values = {f"x-large-{n}": chr(ord("a") + n) * 4000 for n in range(6)}  # 24 KB of headers
    answer = await exchange(
        gateway, request("GET /large HTTP/1.1", *(f"{k}: {v}" for k, v in values.items()))
    )
    assert (answer.status, answer.body) == (200, b"target /large")
    [received] = backend.received
    for name, value in values.items():
        assert received.header(name.encode()) == value.encode()


# --- Requests that must never reach the upstream -----------------------------------------------


async def refused(
    gateway: Ready, data: bytes, statuses: tuple[int, ...] = (400,)
) -> Response | None:
    """Send a bad request on a new connection: it must get one of `statuses` or no response at
    all, then the connection must close. Returns the response (None if there was none)."""
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            with contextlib.suppress(trio.BrokenResourceError):
                await wire.send(data)  # the gateway may refuse before it has read it all
            answer = await read_response(wire)
            assert answer is None or answer.status in statuses, answer
            assert await wire.closed_by_peer(), "the connection must close after a bad request"
    return answer


async def still_serving(gateway: Ready, backend: RawBackend) -> None:
    """The gateway answers a good request on a new connection, and the upstream saw only it."""
    answer = await exchange(gateway, request("GET /afterwards HTTP/1.1"))
    assert (answer.status, answer.body) == (200, b"target /afterwards")
    assert [r.target for r in backend.received] == [b"/afterwards"]


async def test_content_length_with_transfer_encoding_cannot_smuggle_a_request(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway, trust_content_length=True)
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n"
    size_line = b"%x\r\n" % len(smuggled)
    attack = request(
        "POST /first HTTP/1.1",
        f"Content-Length: {len(size_line)}",  # a Content-Length reader stops after the size line
        "Transfer-Encoding: chunked",
        body=size_line + smuggled + b"\r\n0\r\n\r\n",
    )
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(attack)
            answer = await read_response(wire)
            if answer is None or answer.status == 400:
                assert await wire.closed_by_peer(), "the connection must close after a 400"
    await storage.proxies.delete(HOST)  # stopping the proxy closes its upstream connections,
    await backend.all_closed()  # so the backend has read everything the gateway ever sent it
    assert b"/smuggled" not in [r.target for r in backend.received]
    for received in backend.received:
        assert (
            received.header(b"content-length") is None or b"transfer-encoding" not in received.names
        )
    assert answer is not None and answer.status == 400, "refused with a 400"


BAD_HEADS = [
    pytest.param(b"GARBAGE\r\n\r\n", id="malformed-request-line"),
    pytest.param(request("GET /bad HTTP/1.1", "X-Bad : 1"), id="space-before-colon"),
    pytest.param(request("GET /bad HTTP/1.1", "X Bad: 1"), id="space-in-name"),
    pytest.param(request("GET /bad HTTP/1.1", "X-Bad\t: 1"), id="tab-before-colon"),
    pytest.param(request("GET /bad HTTP/1.1", "X-Bad"), id="line-without-colon"),
]


@pytest.mark.parametrize("bad_head", BAD_HEADS)
async def test_unparseable_request_head_is_refused_closed_and_not_forwarded(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, bad_head: bytes
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    await refused(gateway, bad_head)
    await still_serving(gateway, backend)


@pytest.mark.parametrize("bad_head", BAD_HEADS)
async def test_unparseable_request_head_gets_a_400(gateway: Ready, bad_head: bytes) -> None:
    answer = await refused(gateway, bad_head)
    assert answer is not None, "closed without a response"
    assert answer.status == 400


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(("Content-Length: 5", "Content-Length: 6"), id="conflicting-lengths"),
        pytest.param(("Content-Length: +5",), id="signed-length"),
        pytest.param(("Content-Length: 0x5",), id="hex-length"),
        pytest.param(("Transfer-Encoding: gzip, chunked",), id="unsupported-coding"),
        pytest.param(("Transfer-Encoding: xchunked",), id="unknown-coding"),
    ],
)
async def test_ambiguous_body_framing_is_refused(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, framing: tuple[str, ...]
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    bad = request("POST /framing HTTP/1.1", *framing, body=b"hello0\r\n\r\n")
    await refused(gateway, bad, (400, 501))
    await still_serving(gateway, backend)


@pytest.mark.parametrize(
    ("start", "framing"),
    [
        pytest.param("POST /te HTTP/1.1", ("Transfer-Encoding: gzip", "Transfer-Encoding: chunked"),
                     id="two-lines"),
        pytest.param("POST /te HTTP/1.1", ("Transfer-Encoding: identity, chunked",), id="list"),
        pytest.param("POST /te HTTP/1.1", ("Transfer-Encoding: gzip,chunked",), id="no-space"),
        pytest.param("POST /te HTTP/1.0", ("Transfer-Encoding: chunked",), id="http10"),
    ],
)  # fmt: skip
async def test_a_transfer_coding_other_than_chunked_alone_is_refused(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, start: str, framing: tuple[str, ...]
) -> None:
    """llhttp accepts any codings before a final `chunked`, and the gateway passed the client's
    Transfer-Encoding lines on: a backend reading the first line (`gzip`) would frame the body
    otherwise than the gateway did (TE.TE desync). Only `chunked` is decoded here, so anything
    else is refused (RFC 9112 §6.1: 501), as is Transfer-Encoding in HTTP/1.0 (faulty framing)."""
    backend = await raw_upstream(nursery, storage, gateway)
    await refused(gateway, request(start, *framing, body=b"3\r\nabc\r\n0\r\n\r\n"), (400, 501))
    await still_serving(gateway, backend)


FILLERS = [f"X-Filler-{n}: {'f' * 1000}" for n in range(200)]
"""About 200 KiB of header lines: far over any head limit. (With h11 the limit bounds only an
incomplete head, so a complete head of 64 to 128 KiB may or may not get through, depending on
how the bytes arrive; 200 KiB never does.)"""


async def test_oversized_request_head_is_refused_and_the_gateway_keeps_serving(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    await refused(gateway, request("GET /huge HTTP/1.1", *FILLERS), (400, 431))
    await still_serving(gateway, backend)


async def test_endless_request_head_is_refused_without_waiting_for_its_end(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    unfinished = request("GET /endless HTTP/1.1", *FILLERS).removesuffix(b"\r\n")
    await refused(gateway, unfinished, (400, 431))
    await still_serving(gateway, backend)


async def test_malformed_request_after_a_good_one_is_not_forwarded(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /good HTTP/1.1"))
            good = await response(wire)
            await wire.send(b"GARBAGE\r\n\r\n")
            bad = await read_response(wire)
            closed = await wire.closed_by_peer()
    assert (good.status, good.body) == (200, b"target /good")
    assert bad is None or bad.status == 400
    assert closed
    assert [r.target for r in backend.received] == [b"/good"]


# --- Response side -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
async def test_close_delimited_upstream_body_arrives_whole(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, version: bytes
) -> None:
    body = bytes(range(256)) * 800  # 200 KiB, in several writes, then the upstream closes
    head = version + b" 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
    parts = (head, body[:1000], body[1000:150_000], body[150_000:])
    await raw_upstream(nursery, storage, gateway, {b"/stream": Answer(parts, close=True)})
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /stream HTTP/1.1"))
            answer = await response(wire)
            assert (answer.status, len(answer.body)) == (200, len(body))
            assert answer.body == body
            assert answer.header(b"content-type") == b"application/octet-stream"
            assert answer.framing in ("chunked", "close")
            if answer.framing == "chunked":  # re-framed: the client connection lives on
                await wire.send(request("GET /next HTTP/1.1"))
                after = await response(wire)
                assert (after.status, after.body) == (200, b"target /next")
            else:
                assert await wire.closed_by_peer()


@pytest.mark.parametrize(
    "last",
    [
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nlast.", id="http10"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nlast.",
            id="connection-close",
        ),
    ],
)
async def test_an_upstream_connection_that_ends_is_not_reused_nor_is_its_end_passed_on(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, last: bytes
) -> None:
    # the backend leaves the connection open: only the gateway can decide not to reuse it
    backend = await raw_upstream(nursery, storage, gateway, {b"/last": Answer((last,))})
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /last HTTP/1.1"))
            first = await response(wire)
            await wire.send(request("GET /next HTTP/1.1"))  # the client's connection lives on
            after = await response(wire)
    assert (first.status, first.body, first.framing) == (200, b"last.", "content-length")
    assert first.header(b"connection") in (None, b"keep-alive")
    assert (after.status, after.body) == (200, b"target /next")
    [last_request, next_request] = backend.received
    assert next_request.connection != last_request.connection


@pytest.mark.parametrize(
    ("target", "upstream_answer"),
    [
        pytest.param(b"/204", b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", id="204"),
        pytest.param(
            b"/304",
            b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 11\r\n\r\n',
            id="304",
        ),
    ],
)
async def test_bodiless_status_sends_no_body_and_the_connection_serves_on(
    nursery: trio.Nursery,
    storage: Storage,
    gateway: Ready,
    target: bytes,
    upstream_answer: bytes,
) -> None:
    await raw_upstream(nursery, storage, gateway, {target: Answer((upstream_answer,))})
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request(f"GET {target.decode()} HTTP/1.1"))
            first = await response(wire)
            await wire.send(request("GET /next HTTP/1.1"))
            after = await response(wire)
    assert first.status == int(target[1:])
    assert first.body == b""
    assert first.header(b"transfer-encoding") is None
    if first.status == 304:  # a 304's Content-Length describes the representation: kept
        assert first.header(b"etag") == b'"v1"'
        assert first.header(b"content-length") == b"11"
    # had the gateway sent (or waited for) body bytes, this would not read as the next answer
    assert (after.status, after.body) == (200, b"target /next")


@pytest.mark.parametrize(
    "interim",
    [
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n", id="100"),
        pytest.param(
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n", id="103"
        ),
    ],
)
async def test_upstream_1xx_before_the_final_response(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, interim: bytes
) -> None:
    final = ok(b"the final answer")
    await raw_upstream(nursery, storage, gateway, {b"/info": Answer((interim, final))})
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /info HTTP/1.1"))
            answer = await response(wire)
            await wire.send(request("GET /next HTTP/1.1"))
            after = await response(wire)
    assert (answer.status, answer.body) == (200, b"the final answer")
    assert (after.status, after.body) == (200, b"target /next")


async def test_chunked_upstream_response_arrives_exact(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    big = b"y" * 100_000
    parts = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"6\r\nfirst \r\n",
        b"7;ext=1\r\nsecond \r\n%x\r\n%s\r\n" % (len(big), big),
        b"4\r\nlast\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    await raw_upstream(nursery, storage, gateway, {b"/chunks": Answer(parts)})
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /chunks HTTP/1.1"))
            answer = await response(wire)
            await wire.send(request("GET /next HTTP/1.1"))
            after = await response(wire)
    assert answer.status == 200
    assert answer.header(b"content-type") == b"text/plain"
    assert answer.body == b"first second " + big + b"last"
    assert (after.status, after.body) == (200, b"target /next")


async def test_hop_by_hop_response_headers_are_removed(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    hops = (
        b"HTTP/1.1 200 OK\r\n"
        b"Connection: X-Secret\r\n"
        b"Connection: keep-alive\r\n"  # every line's options count, not only the last's
        b"X-Secret: 1\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"Proxy-Authenticate: Basic realm=x\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"X-End-To-End: kept\r\n"
        b"Content-Length: 2\r\n\r\nok"
    )
    await raw_upstream(nursery, storage, gateway, {b"/hops": Answer((hops,))})
    answer = await exchange(gateway, request("GET /hops HTTP/1.1"))
    assert (answer.status, answer.body) == (200, b"ok")
    removed = {b"x-secret", b"keep-alive", b"proxy-authenticate", b"proxy-connection"}
    assert answer.names & removed == set()
    assert b"x-secret" not in (answer.header(b"connection") or b"").lower()
    assert answer.header(b"x-end-to-end") == b"kept"


@pytest.mark.parametrize("coding", [b"gzip", b"chunked, gzip"])
async def test_a_response_whose_last_transfer_coding_is_not_chunked_is_a_502(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, coding: bytes
) -> None:
    """Its body ends at the close (RFC 9112 §6.3), in a coding the gateway cannot undo: it
    went to the client under the backend's Transfer-Encoding, framed in chunks of the
    gateway's own. A 502, as nginx answers."""
    gz = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\n\r\nabcdef"
    await raw_upstream(nursery, storage, gateway, {b"/gz": Answer((gz,), close=True)})
    answer = await exchange(gateway, request("GET /gz HTTP/1.1"))
    assert answer.status == 502, answer
    assert b"abcdef" not in answer.body and answer.header(b"transfer-encoding") is None


async def test_a_kept_alive_connection_that_idles_past_the_timeout_is_closed(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    idle = 1.0
    gateway: Ready = await nursery.start(
        functools.partial(serve, make_settings(proxy_idle_timeout=idle), handle_signals=False)
    )
    await raw_upstream(nursery, storage, gateway)
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /one HTTP/1.1"))
            assert (await response(wire)).body == b"target /one"
            await trio.sleep(idle / 5)  # within the timeout: the connection still serves
            await wire.send(request("GET /two HTTP/1.1"))
            assert (await response(wire)).body == b"target /two"
            assert await wire.closed_by_peer()  # then it idles, and the gateway closes it


async def test_the_idle_timeout_never_cuts_a_request_in_progress(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    idle = 0.3
    gateway: Ready = await nursery.start(
        functools.partial(serve, make_settings(proxy_idle_timeout=idle), handle_signals=False)
    )
    port: int = await nursery.start(functools.partial(serve_backend, "quart"))
    await create_proxy(storage, HOST, port)
    await until_served(gateway)
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /echo/first HTTP/1.1"))
            assert echoed(await response(wire))["path"] == "/echo/first"
            await wire.send(request("GET /slow/1.5 HTTP/1.1"))  # five idle timeouts long
            slow = await response(wire)
    assert slow.status == 200
