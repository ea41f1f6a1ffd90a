"""Attacks on the HTTP/2 front, sent on the wire.

- Every stream becomes an HTTP/1.1 request line `METHOD TARGET HTTP/1.1` to the backend.
  `:method` and `:path` came through with spaces (and non-ASCII bytes): `:method: GET /secret`
  with `:path: /public` was routed and auth-checked as `/public` (an auth-excluded path) while
  the backend read `GET /secret /public HTTP/1.1`, a request line the gateway's own HTTP/1.1
  parser refuses. Sent against a protected proxy, with a raw backend recording every line.
- Each running stream holds an upstream connection: one HTTP/2 connection of a client at its
  PROXY_MAX_CONNECTIONS_PER_IP share held 100 upstream connections more. Streams count now.
- A HEADERS frame that ended the stream could carry `content-length: N`: the backend got a
  head announcing N bytes that never came, and took them from the next request on the
  pooled connection (request smuggling past the auth check).
- A client's SETTINGS_HEADER_TABLE_SIZE sized the gateway's own HPACK encoder table (up to
  4 GiB), which then kept every response header value sent on the connection (main's
  `encoding.ResponseEncoder` now keeps no dynamic table; the test stays).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import trio
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame

from oauthproxy.proxy.http2 import encoding
from oauthproxy.serve import Ready, serve
from oauthproxy.storage import Storage
from tests.eventually import eventually
from tests.h2_client import H2Answer, H2Client
from tests.test_http2 import SECURE, connected, goaway_code, serve_names, served
from tests.test_http_conformance import RawBackend
from tests.tls import TestPKI, make_pki

PROTECTED = {
    "auth_enabled": True,
    "auth_required_users": ["*"],
    "auth_excluded_paths": ["/public"],
}


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return make_pki(tmp_path, (SECURE,))


async def _raw_h2(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> tuple[RawBackend, H2Client, str]:
    backend = RawBackend()
    await nursery.start(backend.serve)
    await serve_names(storage, pki, {SECURE: backend.port}, **PROTECTED)
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    authority = f"{SECURE}:{gateway.https_port}"
    await served(client, authority, "/public/ready")
    backend.received.clear()
    return backend, client, authority


SMUGGLING = [
    ("GET /secret", "/public"),  # the backend would read GET /secret /public HTTP/1.1
    ("GET", "/public /secret"),
    ("GET", "/public/\u00e9"),
    ("GET", "/public\t/x"),
    ("G(T", "/public"),
]


async def test_a_request_line_http11_would_refuse_gets_a_400_and_never_reaches_the_backend(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    backend, client, authority = await _raw_h2(nursery, storage, gateway, pki)
    for method, path in SMUGGLING:
        answer = await client.request(authority, path, method=method)
        assert answer.status == 400, (method, path, answer, backend.received, backend.junk)
        assert json.loads(answer.body)["error"] == "bad_request"
    assert backend.received == [] and backend.junk == []
    served = await client.request(authority, "/public/after")
    assert served.status == 200 and served.body == b"target /public/after"
    await client.aclose()


class HoldingBackend:
    """An HTTP/1.1 backend that answers each request (with an `X-Request-Id` of its own) once
    `released` when it `hold`s: what the gateway keeps open upstream meanwhile is `held`."""

    def __init__(self) -> None:
        self.hold = False
        self.held = 0
        self.released = trio.Event()
        self.answered = 0
        self.id_length = 64

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(int(listeners[0].socket.getsockname()[1]))
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        async with stream:
            received = b""
            try:
                while True:
                    while b"\r\n\r\n" not in received:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        received += data
                    received = received.partition(b"\r\n\r\n")[2]
                    if self.hold:
                        self.held += 1
                        await self.released.wait()
                    self.answered += 1
                    unique = b"%0*d" % (self.id_length, self.answered)  # new in every answer
                    await stream.send_all(
                        b"HTTP/1.1 200 OK\r\nX-Request-Id: %s\r\nContent-Length: 2\r\n\r\nok"
                        % unique
                    )
            except trio.BrokenResourceError:
                return


CAP = 4


@pytest.fixture
async def capped(nursery: trio.Nursery, storage: Storage, make_settings: Any) -> Ready:
    """A gateway whose clients may hold CAP connections each."""
    settings = make_settings(proxy_max_connections_per_ip=CAP)
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    return ready


async def test_each_stream_counts_against_the_per_ip_connection_cap(
    nursery: trio.Nursery, storage: Storage, capped: Ready, pki: TestPKI
) -> None:
    """One HTTP/2 connection ran 100 streams, each holding an upstream connection of its own:
    a client at PROXY_MAX_CONNECTIONS_PER_IP connections held 100 times as many upstream. Now
    the connection and its running streams together stay within the cap; the streams over it
    are refused (REFUSED_STREAM) before anything reaches the backend."""
    backend = HoldingBackend()
    port = await nursery.start(backend.serve)
    await serve_names(storage, pki, {SECURE: port})
    client = await connected(capped.https_port, SECURE, pki.ca_file)
    await served(client, SECURE, "/ready")
    backend.hold = True
    streams = [await client.send(SECURE, f"/held/{number}") for number in range(10)]

    async def read_all() -> None:
        with contextlib.suppress(trio.ClosedResourceError):  # once the test closes it
            while await client.read() is not None:
                pass

    nursery.start_soon(read_all)
    refused = CAP - 1  # the connection holds one share itself

    def resets() -> list[int | None]:
        return [client._answers[stream_id].reset for stream_id in streams]

    async def settled() -> bool:
        return backend.held > refused or resets().count(ErrorCodes.REFUSED_STREAM) == 10 - refused

    await eventually(settled, what="streams admitted or refused")
    assert backend.held == refused, (backend.held, resets())
    assert resets().count(ErrorCodes.REFUSED_STREAM) == 10 - refused
    backend.released.set()
    admitted = [stream_id for stream_id in streams if client._answers[stream_id].reset is None]

    async def answered(stream_ids: list[int]) -> bool:
        return all(stream_id in client._ended for stream_id in stream_ids)

    await eventually(lambda: answered(admitted), what="the admitted streams answered")
    again = await client.send(SECURE, "/after")  # their shares came back: served again
    await eventually(lambda: answered([again]), what="a stream after them answered")
    assert [client._answers[stream_id].status for stream_id in [*admitted, again]] == [200] * 4
    await client.aclose()


async def test_a_client_cannot_make_the_gateway_keep_a_huge_hpack_table(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    """A client announced SETTINGS_HEADER_TABLE_SIZE 2^31: the gateway's HPACK encoder took it
    as its own table size and kept every response header value it had sent (a request id,
    say) for the connection's life: memory without bound, and each header encoded was looked
    up in that whole table. What the client's decoder holds mirrors what the gateway's encoder
    keeps: at most 4,096 bytes (now none: `encoding.ResponseEncoder` uses no dynamic table)."""
    backend = HoldingBackend()
    port = await nursery.start(backend.serve)
    await serve_names(storage, pki, {SECURE: port})
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    await served(client, SECURE, "/ready")
    client.h2.update_settings({SettingCodes.HEADER_TABLE_SIZE: 1 << 31})
    await client.flush()
    for number in range(60):  # 60 answers of ~110 header bytes each: 6.6 kB of new values
        answer = await client.request(SECURE, f"/answer/{number}")
        assert answer.status == 200 and len(answer.headers[b"x-request-id"]) == 64
    kept = client.h2.decoder.header_table._current_size  # what the gateway made us keep
    assert kept <= 4096, kept
    await client.aclose()


class AnswerFirstBackend:
    """An HTTP/1.1 backend that answers a request as soon as its head is in and then reads
    and drops the body its Content-Length announces, as nginx does for a `return` (and many
    servers for a 404 or a redirect). Each answer names the request line it answers."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(int(listeners[0].socket.getsockname()[1]))
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        async with stream:
            buffered = b""
            try:
                while True:
                    while b"\r\n\r\n" not in buffered:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        buffered += data
                    head, _, buffered = buffered.partition(b"\r\n\r\n")
                    line, *fields = head.split(b"\r\n")
                    self.lines.append(line)
                    body = b"answers " + line
                    await stream.send_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                    length = next(
                        (
                            int(f.partition(b":")[2])
                            for f in fields
                            if f.lower().startswith(b"content-length:")
                        ),
                        0,
                    )
                    while len(buffered) < length:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        buffered += data
                    buffered = buffered[length:]
            except trio.BrokenResourceError:
                return


async def _smuggling_setup(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> tuple[AnswerFirstBackend, H2Client, str]:
    """A protected proxy whose /public paths need no login, in front of a backend that answers
    before it reads a body; an HTTP/2 client connected to it, and the authority to ask for."""
    backend = AnswerFirstBackend()
    port = await nursery.start(backend.serve)
    await serve_names(storage, pki, {SECURE: port}, **PROTECTED)
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    authority = f"{SECURE}:{gateway.https_port}"
    await served(client, authority, "/public/ready")
    return backend, client, authority


async def test_a_content_length_on_a_request_without_body_is_a_400(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    """A HEADERS frame that ends the stream with `content-length: N` went upstream as a head
    announcing N body bytes and none following. A backend that answers before it reads the
    body then took the first N bytes of the next request on that pooled connection as the
    body, and read the rest as a request of its own: the client chose N so that the rest was
    a header value of its next stream, `GET /secret HTTP/1.1`, which reached the backend past
    the auth check (routed and checked as /public/b) and was answered to the client."""
    backend, client, authority = await _smuggling_setup(nursery, storage, gateway, pki)
    smuggled = "GET /secret HTTP/1.1"
    eaten = len(b"GET /public/b HTTP/1.1\r\nx-a: ")
    first = await client.request(authority, "/public/a", headers=[("content-length", str(eaten))])
    second = await client.request(authority, "/public/b", headers=[("x-a", smuggled)])
    assert first.status == 400, (first, second, backend.lines)
    assert json.loads(first.body)["error"] == "bad_request"
    assert second.status == 200 and second.body == b"answers GET /public/b HTTP/1.1"
    assert smuggled.encode() not in backend.lines, backend.lines
    await client.aclose()


async def test_a_stream_that_announces_no_body_and_never_ends_is_answered(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    """HEADERS with `content-length: 0` and no END_STREAM: the stream waited for its END
    before the request went upstream and before any timeout started, so it held its slot and
    its client's per-IP share forever. It now goes upstream at once, its END (if it ever
    comes) relayed as the end of an empty body, within the request timeout."""
    backend = HoldingBackend()
    await serve_names(storage, pki, {SECURE: await nursery.start(backend.serve)})
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    await served(client, SECURE, "/ready")
    stream_id = client.h2.get_next_available_stream_id()
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", SECURE.encode())]
    fields += [(b":path", b"/held"), (b"content-length", b"0")]
    client.h2.send_headers(stream_id, fields, end_stream=False)
    client._answers[stream_id] = H2Answer()
    await client.flush()
    with trio.move_on_after(10):
        await client.answer(stream_id)
    assert client._answers[stream_id].status == 200
    await client.aclose()


async def test_large_response_fields_are_not_kept_by_the_encoders_cache(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    """The responses' HPACK encoder keeps each field it encoded in a process-wide cache of
    CACHED_FIELDS entries, whatever their size: a backend answering with a large field that
    changes every time (a 30 kB token, an echo of the request) made the gateway hold up to
    4,096 such fields (120 MB) across all connections, and cookies (`set-cookie`) stayed in
    memory after their connections. Only short, indexable fields are cached now."""
    backend = HoldingBackend()
    backend.id_length = 30_000
    port = await nursery.start(backend.serve)
    await serve_names(storage, pki, {SECURE: port})
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    await served(client, SECURE, "/ready")
    for number in range(20):
        answer = await client.request(SECURE, f"/large/{number}")
        assert answer.status == 200 and len(answer.headers[b"x-request-id"]) == 30_000
    kept = sum(len(name) + len(value) for name, value, _ in encoding._encoded)
    assert kept <= encoding.CACHED_FIELDS * encoding.CACHED_FIELD_BYTES, kept
    assert not any(len(value) >= 30_000 for _, value, _ in encoding._encoded)
    await client.aclose()


async def test_resets_the_client_provokes_count_like_its_own(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    """MadeYouReset (CVE-2025-8671): instead of sending RST_STREAM (200 per 10 s), the client
    sends DATA on each stream it had ended, once its request is at the backend; `h2` resets
    the stream itself, the gateway ends its task and frees its slot, and the next stream takes
    it: 600 requests held at the backend at once on one connection, past
    max_concurrent_streams, and no GOAWAY. Those resets count as the client's now."""
    backend = HoldingBackend()
    await serve_names(storage, pki, {SECURE: await nursery.start(backend.serve)})
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    await served(client, SECURE, "/ready")
    backend.hold = True
    ended = trio.Event()

    async def read_all() -> None:  # (the client's h2 must see the resets to open more streams)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            while await client.read() is not None:
                pass
        ended.set()

    nursery.start_soon(read_all)
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", SECURE.encode())]
    sent = 0
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        for _round in range(12):  # 12 rounds of 50 streams
            if client.terminated is not None:
                break
            ids = []
            for number in range(50):
                stream_id = client.h2.get_next_available_stream_id()
                path = b"/work/%d" % number
                client.h2.send_headers(stream_id, [*fields, (b":path", path)], end_stream=True)
                ids.append(stream_id)
            await client.flush()
            sent += len(ids)

            async def at_backend(wanted: int = sent) -> bool:
                return backend.held >= wanted

            with trio.move_on_after(5):  # (once the gateway has closed, they never come)
                await eventually(at_backend, what="the requests at the backend")
            frames = b"".join(DataFrame(i, data=b"x").serialize() for i in ids)
            await client.stream.send_all(frames)  # on half-closed streams: h2 resets them
            await trio.sleep(0.05)
    with trio.move_on_after(10):
        await ended.wait()
    assert client.terminated is not None, (backend.held, sent)
    assert client.terminated.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert backend.held <= 300, backend.held  # 200 resets, and the streams before them
    backend.released.set()


async def test_frames_on_a_reset_stream_cannot_make_the_gateway_queue_without_bound(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    """`h2` answers each frame on a stream the client reset with RST_STREAM (STREAM_CLOSED) and
    tells the gateway nothing: 9 MB of empty DATA frames on one, from a client that read
    nothing, made the gateway queue 13 MB. Past `UNREAD_ANSWERS` it gets GOAWAY."""
    await serve_names(storage, pki, {SECURE: await nursery.start(HoldingBackend().serve)})
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    await served(client, SECURE, "/ready")
    stream_id = await client.send(SECURE, "/x")
    client.h2.reset_stream(stream_id, ErrorCodes.CANCEL)  # one reset: well within the budget
    await client.flush()
    flood = DataFrame(stream_id, data=b"").serialize() * 10_000  # 90 kB
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        for _ in range(100):  # a million frames, and nothing read meanwhile
            await client.stream.send_all(flood)
    with trio.move_on_after(30):
        code = await goaway_code(client)
    assert code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_h2_trailers_cannot_end_a_body_shorter_than_its_content_length(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    """HEADERS with `content-length: N` (no END_STREAM), then a trailer HEADERS frame with
    END_STREAM and no DATA at all. `h2` checks the content-length only against DATA frames
    that end the stream, not against trailers; the gateway does not count the body either.
    So the backend gets a head announcing N bytes, none follow, the gateway thinks the
    exchange ended cleanly and pools the connection. A backend that answers before reading
    the body (nginx `return`, a 404, a redirect) then eats the first N bytes of the next
    request on that pooled connection, and reads the rest as a request of its own: here a
    header value of the attacker's next stream, `GET /secret HTTP/1.1`, routed and checked as
    the auth-excluded /public/b, reaches the backend past the auth check."""
    backend, client, authority = await _smuggling_setup(nursery, storage, gateway, pki)
    smuggled = "GET /secret HTTP/1.1"
    eaten = len(b"GET /public/b HTTP/1.1\r\nx-a: ")
    stream_id = client.h2.get_next_available_stream_id()
    fields = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", authority.encode())]
    fields += [(b":path", b"/public/a"), (b"content-length", b"%d" % eaten)]
    client.h2.send_headers(stream_id, fields, end_stream=False)
    client.h2.send_headers(stream_id, [(b"x-trailer", b"1")], end_stream=True)  # trailers
    client._answers[stream_id] = H2Answer()
    await client.flush()
    with trio.fail_after(10):
        first = await client.answer(stream_id)
    with trio.fail_after(10):
        second = await client.request(authority, "/public/b", headers=[("x-a", smuggled)])
    assert smuggled.encode() not in backend.lines, (first, second, backend.lines)
    assert first.status == 400 or first.reset is not None, first
    assert second.status == 200 and second.body == b"answers GET /public/b HTTP/1.1"
    await client.aclose()


class StallMeter:
    """How long the event loop every tenant shares went without running a task: a task that
    sleeps 10 ms at a time and records the longest gap between its wake-ups."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def run(self) -> None:
        while True:
            before = trio.current_time()
            await trio.sleep(0.01)
            self.longest = max(self.longest, trio.current_time() - before - 0.01)


@pytest.mark.parametrize(
    ("opening", "size"),
    [(b"\x20", 61 * 16_384 - 200), (b"\x20", 60_000), (b"\x3f\xe1\x1f", 20_000)],
    ids=["1-MB-of-size-updates", "60-kB-of-size-updates", "long-form-size-updates"],
)
async def test_a_header_block_of_table_size_updates_is_refused_unread(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI, opening: bytes, size: int
) -> None:
    """A one-byte "dynamic table size update" (0x20) adds nothing to a header list's size, so
    a block of a million of them before a valid request passed the 64 KiB limit, and `hpack`
    walked it in Python: seconds of the event loop every tenant shares, per request. A block
    larger than the limit, or one that opens with more than the two updates RFC 7541 §4.2
    allows, is now refused before it is decoded (the connection ends with GOAWAY); the request
    never goes on."""
    backend = AnswerFirstBackend()
    port = await nursery.start(backend.serve)
    await serve_names(storage, pki, {SECURE: port})
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    await served(client, SECURE, "/ready")
    stream_id = client.h2.get_next_available_stream_id()
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", SECURE.encode())]
    block = opening * (size // len(opening)) + Encoder().encode([*fields, (b":path", b"/bomb")])
    piece = 16_384
    pieces = [block[at : at + piece] for at in range(0, len(block), piece)]
    frames: list[HeadersFrame | ContinuationFrame] = [
        HeadersFrame(stream_id, pieces[0], flags=["END_STREAM"]),
        *(ContinuationFrame(stream_id, part) for part in pieces[1:]),
    ]
    frames[-1].flags.add("END_HEADERS")
    await client.stream.send_all(b"".join(frame.serialize() for frame in frames))
    with trio.fail_after(30):  # (`h2` answers a block it cannot decode with PROTOCOL_ERROR)
        refused = await goaway_code(client)
    assert refused in (ErrorCodes.PROTOCOL_ERROR, ErrorCodes.ENHANCE_YOUR_CALM), refused
    assert b"GET /bomb HTTP/1.1" not in backend.lines, backend.lines


async def test_a_header_block_in_progress_holds_no_more_than_the_header_limit(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    """`h2` keeps the frames of an unfinished header block up to 64 of them, counted by frame,
    not by byte: HEADERS and 63 CONTINUATION frames of 16 KiB without END_HEADERS held 1 MiB
    per connection until the idle timeout (and a client's share of connections, hundreds of
    MiB). A block in progress past the 64 KiB header-list limit now ends the connection."""
    backend = AnswerFirstBackend()
    port = await nursery.start(backend.serve)
    await serve_names(storage, pki, {SECURE: port})
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    await served(client, SECURE, "/ready")
    piece = b"\x00" * 16_384
    frames: list[HeadersFrame | ContinuationFrame] = [
        HeadersFrame(3, piece),
        *(ContinuationFrame(3, piece) for _ in range(4)),  # 80 KiB, and no END_HEADERS
    ]
    await client.stream.send_all(b"".join(frame.serialize() for frame in frames))
    with trio.fail_after(20):  # (the idle timeout would be 75 s)
        assert await goaway_code(client) == ErrorCodes.PROTOCOL_ERROR
