"""A rolling restart as a load balancer sees it: SIGTERM to a real gateway process while its
clients hold connections. What is in flight finishes (200, `Connection: close`), an idle
keep-alive connection is closed at once, and a new connection is refused; none of it gets the
`404 unknown_host` a deleted proxy gives."""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio
import trio.testing

from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.backend import serve_backend
from tests.conftest import free_port
from tests.test_dataplane import create_proxy
from tests.test_http_conformance import Response, Wire, ok, read_response, request, response
from tests.test_process import started_gateway

HOST = "drain.example.com"
GRACE_SECONDS = 120
"""Far longer than the test takes: everything it sees happens before the grace deadline."""
GUARD_SECONDS = 30
"""Bounds each wait, so a gateway that never does what is awaited fails the test, not hangs it."""


@dataclass
class HeldBackend:
    """A raw keep-alive backend: `/slow` is answered once `release` is set (`received` says it
    arrived); a request with a body is answered with its length; anything else with `ok`."""

    received: trio.Event = field(default_factory=trio.Event)
    release: trio.Event = field(default_factory=trio.Event)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        wire = Wire(stream)
        async with stream:
            while (lines := await wire.head()) is not None:
                target = lines[0].split(b" ")[1]
                sizes = [
                    line.split(b":")[1] for line in lines if b"content-length:" in line.lower()
                ]
                body = await wire.exactly(int(sizes[0]) if sizes else 0)
                if target == b"/slow":
                    self.received.set()
                    await self.release.wait()
                answer = b"got %d" % len(body) if body else b"ok"
                if target == b"/slow":
                    answer = b"slow done"
                await wire.send(ok(answer))


def _environment(data_dir: Path, redis_url: str) -> dict[str, str]:
    settings = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings}
    env.update(
        OAUTHPROXY_DATA_DIR=str(data_dir),
        REDIS_URL=redis_url,
        API_PORT=str(free_port()),
        HTTP_PORT=str(free_port()),
        HTTPS_PORT=str(free_port()),
        PROXY_PROTOCOL_PORT=str(free_port()),
        SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
    )
    return env


async def _connected(port: int) -> Wire:
    return Wire(await trio.open_tcp_stream("127.0.0.1", port))


async def _kept_alive(port: int) -> Wire:
    """A connection that has been served once and stays open for more."""
    wire = await _connected(port)
    await wire.send(request("GET /ok HTTP/1.1", host=HOST))
    answered = await response(wire)
    assert (answered.status, answered.body) == (200, b"ok")
    assert answered.header(b"connection") is None
    return wire


async def _until_served(port: int) -> None:
    with trio.fail_after(GUARD_SECONDS):
        while True:
            wire = await _connected(port)
            await wire.send(request("GET /echo HTTP/1.1", "Connection: close", host=HOST))
            answered = await response(wire)
            await wire.stream.aclose()
            if answered.status == 200:
                return
            await trio.sleep(0.01)


def _closing(answered: Response) -> bool:
    return (answered.header(b"connection") or b"").lower() == b"close"


async def test_sigterm_finishes_what_is_in_flight_and_closes_the_rest(
    tmp_path: Path, nursery: trio.Nursery, storage: Storage, redis_url: str
) -> None:
    backend = HeldBackend()
    backend_port: int = await nursery.start(backend.serve)
    env = _environment(tmp_path / "data", redis_url)
    port = int(env["HTTP_PORT"])
    async with started_gateway(tmp_path / "data", tmp_path, env) as gateway:
        headers = {"Authorization": f"Bearer {gateway.admin_token()}"}
        async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as api:
            proxy = {"hostname": HOST, "target_url": f"http://127.0.0.1:{backend_port}"}
            assert (await api.post("/api/v1/proxy/targets/", json=proxy)).status_code == 201
        await _until_served(port)

        idle = await _kept_alive(port)
        sending = await _kept_alive(port)
        slow = await _kept_alive(port)
        silent = await _connected(port)  # connected, and has sent nothing yet
        with trio.fail_after(GUARD_SECONDS):
            await slow.send(request("GET /slow HTTP/1.1", host=HOST))
            await backend.received.wait()
            # a client in the middle of its next request: its head is through, its body to come
            await sending.send(
                request(
                    "POST /upload HTTP/1.1", "Content-Length: 5", "Expect: 100-continue", host=HOST
                )
            )
            interim = await read_response(sending)
            assert interim is not None and interim.status == 100

        gateway.process.send_signal(signal.SIGTERM)
        with trio.fail_after(GUARD_SECONDS):
            # the idle connections are closed while the slow request is still held upstream
            assert await idle.closed_by_peer()
            assert await silent.closed_by_peer()
        assert not backend.release.is_set()
        try:
            refused = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            refused = None
        assert refused is None, "a new connection was accepted during the drain"

        with trio.fail_after(GUARD_SECONDS):
            await sending.send(b"hello")
            finished = await response(sending)
            assert (finished.status, finished.body) == (200, b"got 5")
            assert _closing(finished)
            assert await sending.closed_by_peer()

            backend.release.set()
            answered = await response(slow)
            assert (answered.status, answered.body) == (200, b"slow done")
            assert _closing(answered)
            assert await slow.closed_by_peer()

            assert await gateway.process.wait() == 0
        for wire in (idle, sending, slow, silent):
            await wire.stream.aclose()


async def test_a_first_request_begun_before_the_drain_is_answered(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    """In one process, so the test knows the gateway has read the start of the request (every
    task is blocked) before the shutdown begins."""
    backend: int = await nursery.start(functools.partial(serve_backend, "drained"))
    shutdown = trio.Event()
    settings = make_settings(shutdown_grace_seconds=GRACE_SECONDS)
    ready: Ready = await nursery.start(
        functools.partial(serve, settings, shutdown=shutdown, handle_signals=False)
    )
    await create_proxy(storage, HOST, backend)
    await _until_served(ready.http_port)
    begun = await _connected(ready.http_port)
    silent = await _connected(ready.http_port)
    await begun.send(b"GET /echo HTTP/1.1\r\n")
    await trio.testing.wait_all_tasks_blocked()

    shutdown.set()
    with trio.fail_after(GUARD_SECONDS):
        assert await silent.closed_by_peer()
        await begun.send(f"Host: {HOST}\r\n\r\n".encode())
        answered = await response(begun)
        assert answered.status == 200
        assert answered.header(b"x-backend") == b"drained"
        assert _closing(answered)
        assert await begun.closed_by_peer()
    for wire in (begun, silent):
        await wire.stream.aclose()
