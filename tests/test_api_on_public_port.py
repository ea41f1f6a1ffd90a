"""The admin API's hostnames (`localhost`) on the public port: loopback clients only, or no one.
Non-loopback clients are simulated the way real ones arrive: through the PROXY protocol port,
from a trusted balancer that names them."""

from __future__ import annotations

from collections.abc import Callable

import trio

from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.test_dataplane_limits import start_gateway
from tests.test_http_conformance import TIMEOUT, Wire, request


async def ask(port: int, data: bytes, *, source: str = "127.0.0.1") -> bytes:
    """Send `data` from `source` and read everything until the gateway closes."""
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
        async with stream:
            await stream.send_all(data)
            return await Wire(stream).rest()


def proxy_line(client_ip: str) -> bytes:
    """What a load balancer in front of PROXY_PROTOCOL_PORT sends first (PROXY protocol v1)."""
    return f"PROXY TCP4 {client_ip} 127.0.0.1 40000 80\r\n".encode()


HEALTH = request("GET /health HTTP/1.1", "Connection: close", host="localhost")


def reached_the_api(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 404 ") and b"unknown_host" in body:
        return False
    assert b'"components"' in body, answer  # /health's own answer
    return True


async def test_api_hostnames_answer_loopback_clients_only(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start_gateway(nursery, make_settings, trusted_proxies=["127.0.0.1/32"])
    assert reached_the_api(await ask(gateway.http_port, HEALTH))
    assert reached_the_api(await ask(gateway.http_port, HEALTH, source="127.0.0.2"))
    port = gateway.proxy_protocol_port
    # a trusted balancer on 127.0.0.1 speaks for the client: the client is what counts
    assert reached_the_api(await ask(port, proxy_line("127.0.0.9") + HEALTH))
    assert not reached_the_api(await ask(port, proxy_line("203.0.113.7") + HEALTH))
    # a local proxy forwarding for a remote client is not a local client
    forwarded = request(
        "GET /health HTTP/1.1",
        "X-Forwarded-For: 203.0.113.7",
        "Connection: close",
        host="localhost",
    )
    assert not reached_the_api(await ask(gateway.http_port, forwarded))
    via = request(
        "GET /health HTTP/1.1", "Forwarded: for=203.0.113.7", "Connection: close", host="localhost"
    )
    assert not reached_the_api(await ask(gateway.http_port, via))


async def test_api_hostnames_answer_no_one_when_turned_off(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start_gateway(nursery, make_settings, api_on_public_port="off")
    assert not reached_the_api(await ask(gateway.http_port, HEALTH))
