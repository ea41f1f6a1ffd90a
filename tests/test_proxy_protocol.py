"""PROXY_PROTOCOL_PORT: a real haproxy in TCP mode names the client; HTTP and TLS behind it."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio

from oauthproxy.proxy.proxy_protocol import V2_SIGNATURE, ProxyHeader, ProxyHeaderError, parse
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.backend import serve_backend
from tests.conftest import wait_for_port
from tests.eventually import eventually
from tests.haproxy import running_haproxy
from tests.test_https import pki as pki
from tests.test_https import proxy, store_certificate
from tests.tls import TestPKI

CLIENT_ADDRESS = "127.0.0.2"
"""Where the test's client connects from: haproxy sees it, the gateway only sees haproxy."""


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + len(body).to_bytes(2, "big") + body


IPV4_BODY = (
    bytes([192, 0, 2, 7, 10, 0, 0, 1]) + (51234).to_bytes(2, "big") + (443).to_bytes(2, "big")
)
IPV6_BODY = (
    ipaddress.IPv6Address("2001:db8::7").packed
    + ipaddress.IPv6Address("2001:db8::1").packed
    + (51234).to_bytes(2, "big")
    + (443).to_bytes(2, "big")
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 80\r\nGET", ProxyHeader("192.0.2.7", 51234, 40)),
        (b"PROXY TCP6 2001:db8::7 ::1 1 80\r\n", ProxyHeader("2001:db8::7", 1, 33)),
        (b"PROXY UNKNOWN\r\n", ProxyHeader(None, None, 15)),
        (b"PROXY TCP4 192.0.2.7 10.0", None),
        (b"PRO", None),
        (v2(1, 0x11, IPV4_BODY) + b"\x16", ProxyHeader("192.0.2.7", 51234, 28)),
        (v2(1, 0x21, IPV6_BODY), ProxyHeader("2001:db8::7", 51234, 52)),
        (v2(0, 0x00, b""), ProxyHeader(None, None, 16)),
        (v2(1, 0x11, IPV4_BODY)[:20], None),
        (V2_SIGNATURE[:5], None),
    ],
    ids=[
        "v1-tcp4",
        "v1-tcp6",
        "v1-unknown",
        "v1-partial",
        "v1-start",
        "v2-ipv4",
        "v2-ipv6",
        "v2-local",
        "v2-partial",
        "v2-signature-start",
    ],
)
def test_parse(data: bytes, expected: ProxyHeader | None) -> None:
    assert parse(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"PROXY TCP4 192.0.2.7 ::1 1 80\r\n",
        b"PROXY TCP4 not-an-ip 10.0.0.1 1 80\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1 99999\r\n",
        b"PROXY TCP5 192.0.2.7 10.0.0.1 1 80\r\n",
        b"PROXY TCP4 " + b"1" * 120,
        V2_SIGNATURE + bytes([0x11, 0x11, 0, 12]) + IPV4_BODY,
        v2(5, 0x11, IPV4_BODY),
    ],
    ids=[
        "plain-http",
        "family-mismatch",
        "bad-address",
        "bad-port",
        "bad-protocol",
        "v1-too-long",
        "v2-bad-version",
        "v2-bad-command",
    ],
)
def test_what_is_not_a_header_is_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(data)


@contextlib.contextmanager
def haproxy(workdir: Path, gateway_port: int, send_proxy: str) -> Iterator[int]:
    """haproxy in TCP mode in front of `gateway_port`, for as long as the block runs; its port."""
    with running_haproxy(workdir, gateway_port, "tcp", server=send_proxy) as front:
        yield front


@pytest.fixture
async def backend(nursery: trio.Nursery) -> int:
    port: int = await nursery.start(functools.partial(serve_backend, "behind-lb"))
    return port


async def start_gateway(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], **overrides: object
) -> Ready:
    settings = make_settings(**overrides)
    ready: Ready = await nursery.start(functools.partial(serve, settings, handle_signals=False))
    return ready


@pytest.fixture
async def behind_haproxy(
    request: pytest.FixtureRequest,
    nursery: trio.Nursery,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> AsyncIterator[tuple[Ready, int]]:
    """A gateway that trusts 127.0.0.1 (haproxy's address), and haproxy's front port."""
    gateway = await start_gateway(nursery, make_settings, trusted_proxies=["127.0.0.1/32"])
    with haproxy(tmp_path, gateway.proxy_protocol_port, request.param) as front:
        await wait_for_port(front)
        yield gateway, front


async def exchange(port: int, data: bytes, context: ssl.SSLContext | None = None) -> bytes:
    """Send `data` from CLIENT_ADDRESS (over TLS when `context`), and read until closed."""
    tcp = await trio.open_tcp_stream("127.0.0.1", port, local_address=CLIENT_ADDRESS)
    stream: trio.abc.Stream = tcp
    if context is not None:
        stream = trio.SSLStream(tcp, context, server_hostname="secure.example.com")
    received = b""
    async with stream:
        await stream.send_all(data)
        with trio.fail_after(10), contextlib.suppress(trio.BrokenResourceError):
            while chunk := await stream.receive_some(65536):
                received += chunk  # a reset (the gateway closing unread) ends it too
    return received


def echoed_headers(response: bytes) -> dict[str, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    headers: dict[str, str] = json.loads(body)["headers"]
    return headers


def get(hostname: str, *extra: str) -> bytes:
    lines = ["GET /echo HTTP/1.1", f"Host: {hostname}", "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def until_served(port: int, hostname: str) -> None:
    async def known() -> bool:
        return b" 404 " not in (await exchange(port, get(hostname)))[:20]

    await eventually(known, what=f"{hostname} known on port {port}")


@pytest.mark.parametrize("behind_haproxy", ["send-proxy", "send-proxy-v2"], indirect=True)
async def test_http_behind_haproxy_sees_the_real_client(
    behind_haproxy: tuple[Ready, int], storage: Storage, backend: int
) -> None:
    _gateway, front = behind_haproxy
    await storage.proxies.create(proxy("app.example.com", backend))
    await until_served(front, "app.example.com")
    forged = "X-Forwarded-For: 203.0.113.9"  # from the client: not believed
    headers = echoed_headers(await exchange(front, get("app.example.com", forged)))
    assert headers["x-real-ip"] == CLIENT_ADDRESS
    assert headers["x-forwarded-for"] == CLIENT_ADDRESS
    assert headers["x-forwarded-proto"] == "http"


@pytest.mark.parametrize("behind_haproxy", ["send-proxy", "send-proxy-v2"], indirect=True)
async def test_tls_behind_haproxy_is_terminated_with_the_sni_certificate(
    behind_haproxy: tuple[Ready, int], storage: Storage, backend: int, pki: TestPKI
) -> None:
    _gateway, front = behind_haproxy
    await store_certificate(storage, pki)
    await storage.proxies.create(proxy("secure.example.com", backend))
    context = ssl.create_default_context(cafile=str(pki.ca_file))

    async def served() -> bytes | None:
        answer = await exchange(front, get("secure.example.com"), context)
        return answer if b" 200 " in answer[:20] else None

    answer = await eventually(
        served,
        what="secure.example.com served through haproxy",
        ignoring=(trio.BrokenResourceError, ssl.SSLError, OSError),
    )
    headers = echoed_headers(answer)
    assert headers["x-real-ip"] == CLIENT_ADDRESS
    assert headers["x-forwarded-proto"] == "https"


async def test_untrusted_balancers_and_headerless_connections_are_closed(
    nursery: trio.Nursery,
    make_settings: Callable[..., Settings],
    storage: Storage,
    backend: int,
    tmp_path: Path,
) -> None:
    await storage.proxies.create(proxy("app.example.com", backend))
    trusting = await start_gateway(nursery, make_settings, trusted_proxies=["127.0.0.1/32"])
    # a trusted peer that sends no PROXY header: closed without an answer, nothing forwarded
    assert await exchange(trusting.proxy_protocol_port, get("app.example.com")) == b""
    # haproxy at an address the gateway does not trust: closed, though its header is valid
    untrusting = await start_gateway(
        nursery, make_settings, oauthproxy_data_dir=tmp_path / "second"
    )
    with haproxy(tmp_path, untrusting.proxy_protocol_port, "send-proxy") as front:
        await wait_for_port(front)
        assert await exchange(front, get("app.example.com")) == b""
    # the same gateway serves its plain port as usual
    await until_served(untrusting.http_port, "app.example.com")


@pytest.mark.parametrize(
    "header", [b"PROXY UNKNOWN\r\n", v2(0, 0x11, IPV4_BODY)], ids=["v1-unknown", "v2-local"]
)
async def test_a_header_that_names_no_client_is_neither_trusted_nor_loopback(
    header: bytes,
    nursery: trio.Nursery,
    make_settings: Callable[..., Settings],
    storage: Storage,
    backend: int,
) -> None:
    """A trusted balancer on this machine sends UNKNOWN (v1) or LOCAL (v2): the connection was
    taken as the balancer's own, so it was trusted and loopback. Its X-Forwarded-For and
    X-Real-IP were believed, and the admin API's `localhost` answered it, whoever the client
    behind the balancer was. Such a connection is now nobody's: nothing it claims is believed,
    and loopback-only hosts do not answer it."""
    await storage.proxies.create(proxy("app.example.com", backend))
    gateway = await start_gateway(nursery, make_settings, trusted_proxies=[f"{CLIENT_ADDRESS}/32"])
    await until_served(gateway.http_port, "app.example.com")
    port = gateway.proxy_protocol_port
    forged = ("X-Forwarded-For: 203.0.113.9", "X-Real-IP: 203.0.113.9")
    headers = echoed_headers(await exchange(port, header + get("app.example.com", *forged)))
    assert headers["x-forwarded-for"] == CLIENT_ADDRESS, headers
    assert headers["x-real-ip"] == CLIENT_ADDRESS, headers
    admin = await exchange(port, header + get("localhost"))
    assert admin.startswith(b"HTTP/1.1 404 ") and b"unknown_host" in admin, admin
    named = b"PROXY TCP4 127.0.0.9 127.0.0.1 40000 80\r\n"  # a named loopback client still is
    assert b"unknown_host" not in await exchange(port, named + get("localhost"))
