"""HTTP/2 with the clients people use (h2load, Chromium) and the connection's life: graceful
GOAWAY on shutdown, GOAWAY when idle, and HTTP2_ENABLED=false."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame
from playwright.sync_api import Page

from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.backend import pattern
from tests.chromium import Traffic, in_chromium
from tests.eventually import eventually
from tests.h2_client import H2Client
from tests.test_http2 import SECURE, backend, curl, goaway_code, serve_names, serving_secure
from tests.tls import TestPKI, make_pki


async def start_gateway(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], **overrides: object
) -> tuple[Ready, trio.Event]:
    shutdown = trio.Event()
    settings = make_settings(**overrides)
    ready: Ready = await nursery.start(
        functools.partial(serve, settings, shutdown=shutdown, handle_signals=False)
    )
    return ready, shutdown


def pki_for(tmp_path: Path) -> TestPKI:
    return make_pki(tmp_path, (SECURE, "also.example.com"))


async def test_h2load_many_concurrent_streams_on_few_connections(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, tmp_path: Path
) -> None:
    pki = pki_for(tmp_path)
    await (await serving_secure(nursery, storage, gateway.https_port, pki)).aclose()
    url = f"https://{SECURE}:{gateway.https_port}/echo"
    command = ["h2load", "-n", "2000", "-c", "2", "-m", "50"]
    command += [f"--connect-to=127.0.0.1:{gateway.https_port}", url]
    done = await trio.to_thread.run_sync(
        functools.partial(subprocess.run, command, capture_output=True, text=True, check=True)
    )
    assert "Application protocol: h2" in done.stdout, done.stdout
    assert re.search(r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded", done.stdout)
    assert "status codes: 2000 2xx" in done.stdout


async def test_chromium_loads_a_page_over_h2(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, tmp_path: Path
) -> None:
    pki = pki_for(tmp_path)
    await (await serving_secure(nursery, storage, gateway.https_port, pki)).aclose()
    origin = f"https://{SECURE}:{gateway.https_port}"

    def steps(page: Page, _traffic: Traffic) -> tuple[str, str]:
        page.goto(f"{origin}/echo/page")
        protocol = page.evaluate("window.performance.getEntries()[0].nextHopProtocol")
        return protocol, page.inner_text("body")

    (protocol, body), _ = await in_chromium(
        tmp_path,
        origin,
        steps,
        extra_args=[f"--host-resolver-rules=MAP {SECURE} 127.0.0.1"],
        ignore_https_errors=True,
    )
    assert protocol == "h2"
    assert json.loads(body)["path"] == "/echo/page"  # (its /favicon.ico is the backend's 404)


async def test_http2_can_be_turned_off(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    ready, _ = await start_gateway(nursery, make_settings, http2_enabled=False)
    pki = pki_for(tmp_path)
    await serve_names(storage, pki, {SECURE: await backend(nursery, "one")})
    url = f"https://{SECURE}:{ready.https_port}/echo"

    def fetch() -> bytes:
        done = curl(ready.https_port, pki, url, "--write-out", "\n%{http_version}", "--retry", "0")
        return done.stdout.rpartition(b"\n")[2]

    async def version() -> bytes:
        return await trio.to_thread.run_sync(fetch)

    assert (
        await eventually(version, what="HTTPS served", ignoring=(subprocess.CalledProcessError,))
        == b"1.1"
    )


async def test_shutdown_sends_goaway_finishes_streams_in_flight_and_refuses_new_ones(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    ready, shutdown = await start_gateway(nursery, make_settings, shutdown_grace_seconds=10)
    client = await serving_secure(nursery, storage, ready.https_port, pki_for(tmp_path))
    slow = await client.send(SECURE, "/slow/1.0")
    await client.request(SECURE, "/echo")  # answered after the gateway took the slow stream
    shutdown.set()
    frames = RawFrames(client)
    goaway = await frames.next_of(GoAwayFrame)
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.NO_ERROR, slow + 2)
    late = slow + 4  # opened after the GOAWAY: refused, which a client may retry elsewhere
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", SECURE.encode())]
    block = client.h2.encoder.encode([*fields, (b":path", b"/echo")])
    await client.stream.send_all(
        HeadersFrame(late, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()
    )
    reset = await frames.next_of(RstStreamFrame)
    assert (reset.stream_id, reset.error_code) == (late, ErrorCodes.REFUSED_STREAM)
    body = b""
    while True:
        frame = await frames.next_of(DataFrame)
        assert frame.stream_id == slow
        body += frame.data
        if "END_STREAM" in frame.flags:
            break
    assert body == b"slow done"
    assert await frames.closed()


async def test_an_idle_connection_gets_goaway(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    ready, _ = await start_gateway(nursery, make_settings, proxy_idle_timeout=1)
    client = await serving_secure(nursery, storage, ready.https_port, pki_for(tmp_path))
    assert await goaway_code(client) == ErrorCodes.NO_ERROR


@pytest.mark.parametrize(
    ("request_timeout", "header_timeout"),
    [(0.5, 15), (1.0, 0.2)],
    ids=["armed-at-once", "armed-by-the-sweep"],
)
async def test_a_stream_whose_upstream_is_late_gets_a_504_and_the_connection_goes_on(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    request_timeout: float,
    header_timeout: float,
) -> None:
    """The request timeout runs over the stream's own cancel scope: a timeout longer than two
    of the instance's sweeps (a quarter of the header timeout) is armed by the sweep, as a
    connection's is; either way the stream gets the 504 and the connection serves on."""
    ready, _ = await start_gateway(
        nursery,
        make_settings,
        proxy_request_timeout=request_timeout,
        proxy_header_timeout=header_timeout,
    )
    client = await serving_secure(nursery, storage, ready.https_port, pki_for(tmp_path))
    late = await client.send(SECURE, "/slow/30.0")
    on_time = await client.request(SECURE, "/echo")  # the other streams are not held up
    assert on_time.status == 200
    with trio.fail_after(10):
        answer = await client.answer(late)
    assert answer.status == 504
    assert json.loads(answer.body)["error"] == "gateway_timeout"
    assert answer.reset is None
    assert (await client.request(SECURE, "/echo")).status == 200


F = TypeVar("F", bound=Frame)


async def test_a_client_that_keeps_its_window_shut_gets_no_more_and_is_reset(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    ready, _ = await start_gateway(nursery, make_settings, proxy_send_timeout=1)
    client = await serving_secure(nursery, storage, ready.https_port, pki_for(tmp_path))
    client.acknowledge = False  # it reads, but never opens its windows again
    answer = await client.answer(await client.send(SECURE, "/bytes/1000000"))
    assert answer.status == 200
    assert 0 < len(answer.body) <= 65_535  # never more than the window it was given
    assert answer.body == pattern(1000000)[: len(answer.body)]
    assert answer.reset == ErrorCodes.INTERNAL_ERROR


class RawFrames:
    """The frames a connection receives, parsed without the client's state machine (which
    refuses everything after a GOAWAY)."""

    def __init__(self, client: H2Client) -> None:
        self._stream = client.stream
        self._buffer = b""

    async def next_of(self, kind: type[F]) -> F:
        while True:
            frame = await self._next()
            assert frame is not None, f"the connection closed before a {kind.__name__}"
            if isinstance(frame, kind):
                return frame

    async def closed(self) -> bool:
        return await self._next() is None

    async def _next(self) -> Frame | None:
        while True:
            if len(self._buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self._buffer[:9]))
                if len(self._buffer) >= 9 + length:
                    frame.parse_body(memoryview(self._buffer[9 : 9 + length]))
                    self._buffer = self._buffer[9 + length :]
                    return frame
            try:
                data = await self._stream.receive_some(65536)
            except trio.BrokenResourceError:
                return None
            if not data:
                return None
            self._buffer += data
