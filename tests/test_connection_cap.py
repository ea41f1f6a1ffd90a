"""Open connections per client, on the wire: a slowloris from one address cannot stop another
client from being served. Clients come from distinct loopback addresses (127.0.0.0/8)."""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections.abc import Callable

import trio

from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.backend import serve_backend
from tests.test_api_on_public_port import ask, proxy_line
from tests.test_dataplane import create_proxy
from tests.test_dataplane_limits import start_gateway
from tests.test_http_conformance import HOST, TIMEOUT, Wire, request, until_served
from tests.test_https import pki as pki
from tests.test_https import proxy, store_certificate, until_https
from tests.tls import TestPKI


def slow_head(host: str = HOST) -> bytes:
    """A request head still arriving: the rest of it comes when the test says."""
    return f"GET /echo HTTP/1.1\r\nHost: {host}\r\n".encode()


SLOW_HEAD = slow_head()


async def slow_connection(port: int, source: str, prefix: bytes = b"") -> Wire:
    """A connection from `source` that has sent `prefix` and the start of a request head."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    with contextlib.suppress(trio.BrokenResourceError):
        await stream.send_all(prefix + SLOW_HEAD)
    return Wire(stream)


async def slow_tls_connection(port: int, source: str, context: ssl.SSLContext) -> Wire:
    """The same over TLS, for secure.example.com; the handshake is done."""
    tcp = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    stream = trio.SSLStream(tcp, context, server_hostname="secure.example.com")
    await stream.do_handshake()
    await stream.send_all(slow_head("secure.example.com"))
    return Wire(stream)


async def finished(wire: Wire) -> int | None:
    """Finish the slow head; the status of the answer, or None when the gateway had closed it."""
    async with wire.stream:
        with contextlib.suppress(trio.BrokenResourceError):
            await wire.send(b"Connection: close\r\n\r\n")
        lines = await wire.head()
        return None if lines is None else int(lines[0].split(b" ")[1])


async def test_one_client_cannot_hold_more_connections_than_its_share(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    share = 8
    gateway = await start_gateway(
        nursery,
        make_settings,
        proxy_max_connections_per_ip=share,
        trusted_proxies=["127.0.0.1/32"],  # the test's load balancer
    )
    port: int = await nursery.start(functools.partial(serve_backend, "quart"))
    await create_proxy(storage, HOST, port)
    await until_served(gateway)

    with trio.fail_after(TIMEOUT):
        # a slowloris from 127.0.0.2, straight to the HTTP port and through a balancer that
        # names it: one share across the listeners
        slow = [await slow_connection(gateway.http_port, "127.0.0.2") for _ in range(20)]
        named = proxy_line("127.0.0.2")
        slow += [await slow_connection(gateway.proxy_protocol_port, "127.0.0.1", named)]
        # another client is served meanwhile, and so are the balancer's other clients
        get = request("GET /echo HTTP/1.1", "Connection: close")
        other = await ask(gateway.http_port, get, source="127.0.0.3")
        assert other.startswith(b"HTTP/1.1 200 ")
        for _ in range(share + 2):  # the balancer itself is not counted
            via = proxy_line("198.51.100.20") + request("GET /echo HTTP/1.1", "Connection: close")
            assert (await ask(gateway.proxy_protocol_port, via)).startswith(b"HTTP/1.1 200 ")
        statuses = [await finished(wire) for wire in slow]
    assert statuses.count(200) == share
    assert statuses.count(None) == len(slow) - share

    with trio.fail_after(TIMEOUT):  # closed connections give their share back
        again = [await slow_connection(gateway.http_port, "127.0.0.2") for _ in range(share)]
        assert [await finished(wire) for wire in again] == [200] * share


async def test_https_connections_count_in_the_same_share(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    pki: TestPKI,
) -> None:
    share = 3
    gateway = await start_gateway(nursery, make_settings, proxy_max_connections_per_ip=share)
    port: int = await nursery.start(functools.partial(serve_backend, "quart"))
    await store_certificate(storage, pki)
    await storage.proxies.create(proxy("secure.example.com", port))
    await until_https(gateway.https_port, "secure.example.com", pki.ca_file)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    with trio.fail_after(TIMEOUT):
        # admitted before their handshakes, so these three hold the share of 127.0.0.4
        held: list[Wire] = []
        for _ in range(share):
            held.append(await slow_tls_connection(gateway.https_port, "127.0.0.4", context))
        assert await finished(await slow_connection(gateway.http_port, "127.0.0.4")) is None
        assert [await finished(wire) for wire in held] == [200] * share


async def test_no_cap_when_turned_off(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start_gateway(nursery, make_settings, proxy_max_connections_per_ip=0)
    port: int = await nursery.start(functools.partial(serve_backend, "quart"))
    await create_proxy(storage, HOST, port)
    await until_served(gateway)
    with trio.fail_after(TIMEOUT):
        slow = [await slow_connection(gateway.http_port, "127.0.0.2") for _ in range(300)]
        assert [await finished(wire) for wire in slow] == [200] * len(slow)
