"""Protocol upgrades cannot open a tunnel past the gateway's per-request checks.

After a `101 Switching Protocols` the gateway copies bytes both ways without reading them, so
what the client sends next is no longer seen by routing, the auth check or the header rewrite.
That is what a WebSocket needs, and nothing else may have it: an `Upgrade: h2c` request on an
auth-excluded path used to reach a backend that speaks h2c (hypercorn does), and the client then
sent HTTP/2 requests for protected paths, with identity headers of its choosing, straight to the
backend. The same held for any backend that answers 101 without switching (an endpoint echoing a
status code): the raw HTTP/1.1 that followed went past the gateway. Both attacks are sent here on
the wire, against a protected proxy whose `/public` paths need no login.
"""

from __future__ import annotations

import functools
import json

import h2.config
import h2.connection
import h2.events
import trio

from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests.backend import serve_backend
from tests.test_dataplane import create_proxy
from tests.test_http_conformance import TIMEOUT, Answer, RawBackend, client, read_response, response
from tests.test_request_wire import until_up

HOST = "upgrade.test"
PROTECTED = {
    "auth_enabled": True,
    "auth_required_users": ["*"],
    "auth_excluded_paths": ["/public", "/echo/public"],
}
FORGED_IDENTITY = "x-auth-user-name: admin"


def _get(target: str, *headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", f"Host: {HOST}", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def _protected(storage: Storage, gateway: Ready, port: int) -> None:
    await create_proxy(storage, HOST, port, **PROTECTED)
    await until_up(gateway, HOST)


async def test_an_h2c_upgrade_is_not_passed_on(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    port = await nursery.start(functools.partial(serve_backend, "h2c"))
    await _protected(storage, gateway, port)
    http2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = http2.initiate_upgrade_connection()
    assert settings is not None
    upgrade = _get(
        "/echo/public",
        "Upgrade: h2c",
        "Connection: Upgrade",  # HTTP2-Settings not listed: a hop-by-hop filter keeps it
        f"HTTP2-Settings: {settings.decode()}",
    )
    http2.send_headers(
        3,
        [(":method", "GET"), (":path", "/echo/secret"), (":authority", HOST), (":scheme", "http"),
         ("x-auth-user-name", "admin")],
        end_stream=True,
    )  # fmt: skip
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(upgrade + http2.data_to_send())
            answer = await read_response(wire)
            assert answer is not None and answer.status == 200, answer  # never a 101
            assert await wire.closed_by_peer()  # the HTTP/2 that followed is not read
    seen = json.loads(answer.body)
    assert (seen["path"], seen["backend"]) == ("/echo/public", "h2c")
    assert "upgrade" not in seen["headers"]
    assert "http2-settings" in seen["headers"]  # an end-to-end header: harmless without Upgrade


async def test_a_101_that_accepts_no_websocket_opens_no_tunnel(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    fake_switch = (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    backend = RawBackend({b"/public/status/101": Answer((fake_switch,))})
    await nursery.start(backend.serve)
    await _protected(storage, gateway, backend.port)
    backend.received.clear()
    upgrade = _get(
        "/public/status/101",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    )
    smuggled = _get("/secret", FORGED_IDENTITY)
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(upgrade)
            answer = await read_response(wire)
            assert answer is not None
            if answer.status == 101:  # the tunnel is open: send what it would carry
                await wire.send(smuggled)
                await response(wire)  # the backend's answer, through the tunnel
        await backend.all_closed()
    assert [r.target for r in backend.received] == [b"/public/status/101"]
    assert answer.status == 502, answer
    assert json.loads(answer.body)["error"] == "bad_gateway"
