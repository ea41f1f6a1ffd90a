"""Behind an HTTP load balancer in TRUSTED_PROXIES (a real haproxy in HTTP mode, `option
forwardfor`, its stock set-up): the forwarding headers the backend gets name the client the
balancer saw, whatever the client wrote in its own."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable
from pathlib import Path

import trio

from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.backend import serve_backend
from tests.conftest import wait_for_port
from tests.eventually import eventually
from tests.haproxy import running_haproxy
from tests.test_dataplane import create_proxy
from tests.test_dataplane_limits import start_gateway

CLIENT = "127.0.0.2"
"""The client's address: haproxy sees it and appends it to X-Forwarded-For."""


async def exchange(port: int, request: bytes) -> bytes:
    """Send `request` from CLIENT's address and read the answer to the end."""
    received = b""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=CLIENT)
        async with stream:
            await stream.send_all(request)
            with contextlib.suppress(trio.BrokenResourceError):
                while chunk := await stream.receive_some(65536):
                    received += chunk
    return received


def get(host: str, *extra: str) -> bytes:
    lines = ["GET /echo HTTP/1.1", f"Host: {host}", "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_a_client_behind_a_trusted_balancer_cannot_choose_its_x_real_ip(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    """haproxy (as cloud load balancers) appends the client to X-Forwarded-For and leaves
    X-Real-IP alone; the gateway passed a trusted peer's X-Real-IP on as it came, so a client
    that wrote `X-Real-IP: 10.0.0.1` chose the address its backend's allowlists, rate limits
    and audit logs read. It is the address the balancer saw now."""
    gateway: Ready = await start_gateway(nursery, make_settings, trusted_proxies=["127.0.0.1/32"])
    port: int = await nursery.start(functools.partial(serve_backend, "behind-lb"))
    await create_proxy(storage, "app.example.com", port)
    with running_haproxy(tmp_path, gateway.http_port, "http", ["option forwardfor"]) as front:
        await wait_for_port(front)

        async def served() -> bytes | None:
            answer = await exchange(front, get("app.example.com"))
            return answer if answer.startswith(b"HTTP/1.1 200") else None

        await eventually(served, what="app.example.com served behind haproxy")
        answer = await exchange(front, get("app.example.com", "X-Real-IP: 10.0.0.1"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    seen = json.loads(body)["headers"]
    assert seen["x-forwarded-for"] == f"{CLIENT}, 127.0.0.1"
    assert seen["x-real-ip"] == CLIENT
