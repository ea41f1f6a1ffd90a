"""A target changed under load: downloads in flight from the old backend finish, and then no
connection to it is left open (psutil looks at this process's sockets). Connections to origins
still targeted stay pooled."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import psutil
import trio

from oauthproxy.proxy.upstream import UpstreamPool, parse_origin
from oauthproxy.serve import Ready
from tests.backend import serve_backend
from tests.eventually import eventually

DOWNLOADS = 4
BODY_SIZE = 256 * 1024
HOST = "switch.example.com"
TARGETS = "/api/v1/proxy/targets/"
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)
HELD = "/echo/held"


@dataclass
class HeldBackend:
    """A raw HTTP/1.1 backend with keep-alive: `GET HELD` sends its head and half its body at
    once and the rest only once `release` is set; any other path is answered `old`, whole."""

    release: trio.Event = field(default_factory=trio.Event)
    halfway: trio.Semaphore = field(default_factory=lambda: trio.Semaphore(0))
    """Released once per download that has sent its first half."""

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        buffered = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffered:
                    chunk = await stream.receive_some()
                    if not chunk:
                        return
                    buffered += chunk
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                await self._answer(stream, path)

    async def _answer(self, stream: trio.SocketStream, path: bytes) -> None:
        held = path == HELD.encode()
        body = b"x" * BODY_SIZE if held else b"old"
        head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body)
        if not held:
            await stream.send_all(head + body)
            return
        half = len(body) // 2
        await stream.send_all(head + body[:half])
        self.halfway.release()
        await self.release.wait()
        await stream.send_all(body[half:])


def connections_to(port: int) -> list[str]:
    """This process's TCP sockets whose far end is `port` (the gateway's side of upstream
    connections; the backend's own sockets have `port` as their near end)."""
    return [
        f"{c.laddr} -> {c.raddr} {c.status}"
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port
    ]


async def served_by(http_port: int, backend: str) -> None:
    """Wait until a request for /echo/ready on a new connection reaches `backend` (the held
    backend answers `old`; the others say who they are in `X-Backend`)."""
    url = f"http://127.0.0.1:{http_port}/echo/ready"
    async with httpx.AsyncClient(limits=NO_KEEPALIVE) as client:

        async def reached() -> bool:
            response = await client.get(url, headers={"Host": HOST})
            return (response.headers.get("x-backend") or response.text) == backend

        await eventually(reached, what=f"{HOST} reaching {backend}", within=15)


async def downloads_across_a_switch(
    gateway: Ready, old: HeldBackend, switch: Callable[[], Awaitable[None]]
) -> None:
    """Start DOWNLOADS downloads of HELD from `old`, `switch` the target while they are
    halfway, then let them finish: each completes, and its connection carries a next request
    (so the gateway has finished with the download's upstream connection)."""
    base = f"http://127.0.0.1:{gateway.http_port}"
    one_connection = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def download() -> None:
        async with httpx.AsyncClient(base_url=base, limits=one_connection, timeout=30) as client:
            async with client.stream("GET", HELD, headers={"Host": HOST}) as response:
                assert response.status_code == 200
                assert len(await response.aread()) == BODY_SIZE
            after = await client.get("/echo", headers={"Host": HOST})
            assert after.json()["backend"] == "new"

    async with trio.open_nursery() as nursery:
        for _ in range(DOWNLOADS):
            nursery.start_soon(download)
        for _ in range(DOWNLOADS):
            await old.halfway.acquire()
        await switch()
        old.release.set()


async def test_no_connection_to_a_replaced_target_survives_its_download(
    nursery: trio.Nursery, gateway: Ready, api: httpx.AsyncClient
) -> None:
    old = HeldBackend()
    old_port: int = await nursery.start(old.serve)
    new_port: int = await nursery.start(functools.partial(serve_backend, "new"))
    created = await api.post(
        TARGETS, json={"hostname": HOST, "target_url": f"http://127.0.0.1:{old_port}"}
    )
    assert created.status_code == 201, created.text
    await served_by(gateway.http_port, "old")

    async def switch() -> None:
        changed = await api.put(
            f"{TARGETS}{HOST}", json={"target_url": f"http://127.0.0.1:{new_port}"}
        )
        assert changed.status_code == 200, changed.text
        await served_by(gateway.http_port, "new")

    await downloads_across_a_switch(gateway, old, switch)
    assert connections_to(old_port) == []


async def test_no_connection_to_a_replaced_route_target_survives_its_download(
    nursery: trio.Nursery, gateway: Ready, api: httpx.AsyncClient
) -> None:
    old = HeldBackend()
    old_port: int = await nursery.start(old.serve)
    new_port: int = await nursery.start(functools.partial(serve_backend, "new"))
    service = {"service_name": "held", "target_url": f"http://127.0.0.1:{old_port}"}
    assert (await api.post("/api/v1/services/external", json=service)).status_code == 201
    route = {
        "route_id": "held",
        "path_pattern": "/echo/",
        "target_type": "service",
        "target_value": "held",
        "priority": 50,
    }
    assert (await api.post("/api/v1/routes/", json=route)).status_code == 201
    proxy = {"hostname": HOST, "target_url": f"http://127.0.0.1:{new_port}"}
    assert (await api.post(TARGETS, json=proxy)).status_code == 201
    await served_by(gateway.http_port, "old")

    async def switch() -> None:
        url = {"target_url": f"http://127.0.0.1:{new_port}"}
        changed = await api.put("/api/v1/services/external/held", json=url)
        assert changed.status_code == 200, changed.text
        await served_by(gateway.http_port, "new")

    await downloads_across_a_switch(gateway, old, switch)
    assert connections_to(old_port) == []


async def test_retargeting_keeps_the_idle_connections_to_origins_still_targeted(
    nursery: trio.Nursery,
) -> None:
    kept = HeldBackend()
    dropped = HeldBackend()
    kept_port: int = await nursery.start(kept.serve)
    dropped_port: int = await nursery.start(dropped.serve)
    kept_origin = parse_origin(f"http://127.0.0.1:{kept_port}")
    dropped_origin = parse_origin(f"http://127.0.0.1:{dropped_port}")
    pool = UpstreamPool(connect_timeout=5, tls=ssl.create_default_context())
    await pool.retarget(frozenset({kept_origin.key, dropped_origin.key}))
    for origin in (kept_origin, dropped_origin):
        connection = await pool.acquire(origin)
        await pool.release(connection)
    assert len(connections_to(kept_port)) == len(connections_to(dropped_port)) == 1

    await pool.retarget(frozenset({kept_origin.key}))
    assert connections_to(dropped_port) == []
    assert len(connections_to(kept_port)) == 1
    reused = await pool.acquire(kept_origin)
    assert reused.reused

    await pool.retarget(frozenset())
    await pool.release(reused)
    assert connections_to(kept_port) == []
