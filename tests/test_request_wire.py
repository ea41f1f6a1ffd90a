"""The normalised request on the wire: each attack of issue 9 sent as raw bytes to the gateway.

Every test here sends what an attacker would, then checks the gateway's answer and what the
backend saw. Backends are the raw recorder of tests/test_http_conformance.py, and a real WSGI
server (the standard library's wsgiref, in a thread) that reads headers the CGI way (`_` and `-`
are the same there) and resolves dot segments in the path, as many frameworks do.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import trio

from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests.conftest import Mint
from tests.eventually import eventually
from tests.test_dataplane import create_proxy
from tests.test_http_conformance import (
    TIMEOUT,
    client,
    exchange,
    raw_upstream,
    read_response,
    refused,
    request,
    response,
)

OPEN = "wire.example.com"
"""The raw backend's proxy (the `HOST` of test_http_conformance)."""
GUARDED = "mcp.test"


# --- A WSGI backend: CGI-style headers, a path that is resolved before it is served ------------


def _app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Serves `/secret` and `/public/...` by the *resolved* path, and reports what it read.
    Like Tomcat, Jetty and Spring, it drops each segment's `;` parameters before resolving."""
    segments = [segment.partition(";")[0] for segment in environ["PATH_INFO"].split("/")]
    path = posixpath.normpath("/".join(segments))  # wsgiref has already percent-decoded it
    report = {
        "path": path,
        "raw_path": environ["PATH_INFO"],
        "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
        "secret": path == "/secret",
    }
    body = json.dumps(report).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the test's stderr."""


@pytest.fixture
def wsgi_port() -> Iterator[int]:
    server: WSGIServer = make_server("127.0.0.1", 0, _app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


async def until_up(gateway: Ready, host: str) -> None:
    async def known() -> bool:
        answer = await exchange(gateway, request("GET / HTTP/1.1", host=host))
        return b"unknown_host" not in answer.body

    await eventually(known, what=f"{host} known", within=TIMEOUT)


def report(answer: Any) -> dict[str, Any]:
    assert answer.status == 200, answer
    result: dict[str, Any] = json.loads(answer.body)
    return result


# --- Host --------------------------------------------------------------------------------------


async def test_two_host_headers_are_refused_before_any_backend(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    await create_proxy(storage, GUARDED, backend.port, auth_enabled=True)
    await until_up(gateway, GUARDED)
    backend.received.clear()
    for first, second in ((OPEN, GUARDED), (GUARDED, OPEN), (OPEN, OPEN)):
        attack = request("GET /x HTTP/1.1", f"Host: {second}", host=first)
        await refused(gateway, attack)
    assert backend.received == []


@pytest.mark.parametrize(
    "target",
    [
        b"http://mcp.test/x",
        b"http://wire.example.com@mcp.test/x",
        b"https://wire.example.com:8443/x",
        b"ftp://wire.example.com/x",
    ],
)
async def test_an_absolute_target_that_disagrees_with_host_is_refused(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, target: bytes
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    await refused(gateway, b"GET " + target + b" HTTP/1.1\r\nHost: " + OPEN.encode() + b"\r\n\r\n")
    assert backend.received == []


async def test_an_absolute_target_is_forwarded_in_origin_form(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    answer = await exchange(
        gateway,
        b"GET HTTP://Wire.Example.COM:80/a/./b?q=1 HTTP/1.1\r\nHost: wire.example.com\r\n\r\n",
    )
    assert (answer.status, answer.body) == (200, b"target /a/b?q=1")
    [received] = backend.received
    assert received.header(b"x-forwarded-host") == b"wire.example.com"


@pytest.mark.parametrize("host", ["MCP.TEST", "Mcp.Test", "mcp.test.", "MCP.test."])
async def test_a_token_for_the_host_passes_whatever_the_host_case(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, mint: Mint, host: str
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    await create_proxy(storage, GUARDED, backend.port, auth_enabled=True, auth_required_users=["*"])
    await until_up(gateway, GUARDED)
    token = await mint(f"http://{GUARDED}:{gateway.http_port}")
    sent = request(
        "GET /me HTTP/1.1", f"Authorization: Bearer {token}", host=f"{host}:{gateway.http_port}"
    )
    answer = await exchange(gateway, sent)
    assert (answer.status, answer.body) == (200, b"target /me")


@pytest.mark.parametrize("second", ["Bearer forged", "Basic YWRtaW46YWRtaW4="])
async def test_a_second_authorization_header_is_a_400(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, mint: Mint, second: str
) -> None:
    """The gateway checked the first Authorization line and forwarded both: a backend that
    reads the last one (or all) acted on credentials nobody checked. Authorization is a
    singleton (RFC 9110 §11.6.2): two lines are refused, as two Host lines are."""
    backend = await raw_upstream(nursery, storage, gateway)
    await create_proxy(storage, GUARDED, backend.port, auth_enabled=True, auth_required_users=["*"])
    await until_up(gateway, GUARDED)
    token = await mint(f"http://{GUARDED}:{gateway.http_port}")
    valid, host = f"Authorization: Bearer {token}", f"{GUARDED}:{gateway.http_port}"
    sent = request("GET /me HTTP/1.1", valid, f"Authorization: {second}", host=host)
    answer = await exchange(gateway, sent)
    assert answer.status == 400, answer
    assert b"Authorization" in answer.body
    answer = await exchange(gateway, request("GET /me HTTP/1.1", valid, host=host))
    assert (answer.status, answer.body) == (200, b"target /me")
    assert [r.target for r in backend.received] == [b"/me"]


# --- The path ----------------------------------------------------------------------------------

ESCAPES = [
    "/public/../secret",
    "/public/%2e%2e/secret",
    "/public/%2E%2E/secret",
    "/public/.%2e/secret",
    "/public/./../secret",
    "/public//../../secret",
    "/public%2F..%2Fsecret",
    "/public/..%2Fsecret",
    "/public/%2e%2e%2fsecret",
    "/public/..%5Csecret",
    "/public/..;/secret",
    "/public/%2e%2e;jsessionid=1/secret",
    "/public/x/..;/..;/secret",
    "/public/.;/..;/secret",
    "/public/..%3B/secret",  # the `;` encoded: a backend that decodes first reads `..;`
    "/public/..%3b/secret",
    "/public/%2e%2e%3B/secret",
    "/public/x/..%3Bjsessionid=1/..%3B/secret",
]


@pytest.fixture
async def guarded_wsgi(storage: Storage, gateway: Ready, wsgi_port: int) -> None:
    await create_proxy(
        storage,
        GUARDED,
        wsgi_port,
        auth_enabled=True,
        auth_required_users=["*"],
        auth_excluded_paths=["/public"],
    )
    await until_up(gateway, GUARDED)


@pytest.mark.parametrize("path", ESCAPES)
async def test_dot_segments_cannot_leave_an_excluded_path(
    gateway: Ready, guarded_wsgi: None, path: str
) -> None:
    answer = await exchange(gateway, request(f"GET {path} HTTP/1.1", host=GUARDED))
    assert answer.status in (400, 401), answer
    assert b'"secret"' not in answer.body


async def test_the_backend_gets_the_path_that_was_checked(
    gateway: Ready, guarded_wsgi: None
) -> None:
    answer = await exchange(gateway, request("GET /public/a/%2e/b/../c HTTP/1.1", host=GUARDED))
    seen = report(answer)
    assert (seen["raw_path"], seen["secret"]) == ("/public/a/c", False)


# --- Headers the gateway owns, whatever their spelling -----------------------------------------

SPOOFED = [
    "X_Auth_User_Name: admin",
    "x_auth_user_id: 0",
    "X-Auth_Email: root@example.com",
    "X_Forwarded_For: 10.0.0.1",
    "X_Forwarded_Host: admin.internal",
    "X_Real_IP: 10.0.0.1",
    "X-Forwarded_Proto: https",
]


async def test_underscore_spellings_of_owned_headers_never_reach_a_wsgi_backend(
    storage: Storage, gateway: Ready, mint: Mint, wsgi_port: int
) -> None:
    await create_proxy(
        storage,
        GUARDED,
        wsgi_port,
        auth_enabled=True,
        auth_mode="passthrough",
        auth_required_users=["*"],
    )
    await until_up(gateway, GUARDED)
    anonymous = report(await exchange(gateway, request("GET /x HTTP/1.1", *SPOOFED, host=GUARDED)))
    seen = anonymous["headers"]
    assert "HTTP_X_AUTH_USER_NAME" not in seen
    assert "HTTP_X_AUTH_USER_ID" not in seen
    assert "HTTP_X_AUTH_EMAIL" not in seen
    assert seen["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert seen["HTTP_X_REAL_IP"] == "127.0.0.1"
    assert seen["HTTP_X_FORWARDED_PROTO"] == "http"
    assert seen["HTTP_X_FORWARDED_HOST"] == GUARDED

    token = await mint(f"http://{GUARDED}")
    host = GUARDED
    signed = request("GET /x HTTP/1.1", f"Authorization: Bearer {token}", *SPOOFED, host=host)
    seen = report(await exchange(gateway, signed))["headers"]
    assert seen["HTTP_X_AUTH_USER_NAME"] == "alice"  # the gateway's, not joined with "admin"
    assert seen["HTTP_X_AUTH_EMAIL"] == "alice@example.com"


# --- Bytes that count against the head limit ---------------------------------------------------


def rss_bytes() -> int:
    """This process's resident memory (the gateway runs in it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


TRAILER_LINE = b"X-Trailer: " + b"t" * 1000 + b"\r\n"


@pytest.mark.parametrize(
    "opening",
    [
        pytest.param(b"5\r\nhello\r\n0\r\n", id="endless-trailers"),
        pytest.param(b"5;", id="endless-chunk-extension"),
    ],
)
async def test_a_chunked_body_that_never_ends_its_framing_is_cut_off(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, opening: bytes
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    filler = (TRAILER_LINE if opening.endswith(b"\r\n") else b"e" * 1000) * 64
    before = rss_bytes()
    sent = 0

    async def flood(wire: Any) -> None:
        nonlocal sent
        with contextlib.suppress(trio.BrokenResourceError):
            while sent < 128 * 1024 * 1024:
                await wire.send(filler)
                sent += len(filler)

    with trio.fail_after(60):
        async with client(gateway) as wire, trio.open_nursery() as flooding:
            await wire.send(request("POST /up HTTP/1.1", "Transfer-Encoding: chunked") + opening)
            flooding.start_soon(flood, wire)
            answer = await read_response(wire)  # the gateway answers while the flood goes on
            flooding.cancel_scope.cancel()
    grown = rss_bytes() - before
    assert answer is not None, f"no answer after {sent} bytes of framing"
    assert answer.status == 431, answer
    assert grown < 32 * 1024 * 1024, f"memory grew by {grown} bytes"
    assert [r.target for r in backend.received] == []  # the body never ended


def head_of_size(size: int) -> bytes:
    """A request head of exactly `size` bytes (request line and final CRLF included)."""
    start = request("GET /sized HTTP/1.1", "X-Pad: ")
    pad = size - len(start)
    data = request("GET /sized HTTP/1.1", "X-Pad: " + "p" * pad)
    assert len(data) == size
    return data


@pytest.mark.parametrize("split", [None, 1000, 65535])
async def test_the_head_limit_is_exact(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, split: int | None
) -> None:
    """64 KiB pass and one byte more does not, however the bytes arrive."""
    backend = await raw_upstream(nursery, storage, gateway)
    for size, allowed in ((64 * 1024, True), (64 * 1024 + 1, False)):
        data = head_of_size(size)
        with trio.fail_after(TIMEOUT):
            async with client(gateway) as wire:
                step = split or len(data)
                with contextlib.suppress(trio.BrokenResourceError):  # refused before the end
                    for start in range(0, len(data), step):
                        await wire.send(data[start : start + step])
                answer = await response(wire)
        assert answer.status == (200 if allowed else 431), (size, answer.status)
    assert [r.target for r in backend.received] == [b"/sized"]


async def test_after_a_good_request_the_next_head_is_counted_from_its_own_start(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    await raw_upstream(nursery, storage, gateway)
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /one HTTP/1.1"))
            assert (await response(wire)).status == 200
            await wire.send(head_of_size(64 * 1024))
            assert (await response(wire)).status == 200
