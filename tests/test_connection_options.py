"""A Connection header cannot take a message's framing away (request smuggling, on the wire).

The gateway forwards the framing headers it parsed (`Content-Length`, `Transfer-Encoding`) and
frames each body by them on the way out. A header a Connection line lists is hop-by-hop and is
removed (RFC 9110 §7.6.1), so `Connection: content-length` once made the gateway send a request's
body with nothing to say where it ends: the backend read the body as a request of its own,
past routing and the auth check, and its answer waited on the pooled connection for the next
client. The same from a backend took the length off its response. Framing headers are never
removed for being listed (`headers.FRAMING`).
"""

from __future__ import annotations

import pytest
import trio

from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests.test_dataplane import create_proxy
from tests.test_http_conformance import (
    HOST,
    TIMEOUT,
    Answer,
    RawBackend,
    client,
    exchange,
    raw_upstream,
    read_response,
    request,
)
from tests.test_request_wire import until_up

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nX-Auth-User: admin\r\n\r\n"


async def _send(gateway: Ready, attack: bytes) -> None:
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(attack)
            await read_response(wire)


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param(
            request(
                "POST /first HTTP/1.1",
                "Connection: content-length",
                f"Content-Length: {len(SMUGGLED)}",
                body=SMUGGLED,
            ),
            id="content-length",
        ),
        pytest.param(
            request(
                "POST /first HTTP/1.1",
                "Connection: keep-alive, Transfer-Encoding",
                "Transfer-Encoding: chunked",
                body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED),
            ),
            id="transfer-encoding",
        ),
    ],
)
async def test_a_connection_option_naming_a_framing_header_smuggles_no_request(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, attack: bytes
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    await _send(gateway, attack)
    victim = await exchange(gateway, request("GET /victim HTTP/1.1"))  # another client, later
    await storage.proxies.delete(HOST)  # closes its upstream connections: all of it was read
    await backend.all_closed()
    assert victim.body == b"target /victim", victim
    assert [r.target for r in backend.received] == [b"/first", b"/victim"]
    assert backend.junk == []
    assert backend.received[0].body == SMUGGLED  # the body, framed as the client framed it


async def test_a_request_smuggled_in_a_body_does_not_pass_the_auth_check(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    host = "guarded.test"
    backend = RawBackend()
    await nursery.start(backend.serve)
    await create_proxy(
        storage, host, backend.port,
        auth_enabled=True, auth_required_users=["*"], auth_excluded_paths=["/public"],
    )  # fmt: skip
    await until_up(gateway, host)
    assert (await exchange(gateway, request("GET /secret HTTP/1.1", host=host))).status == 401
    smuggled = f"GET /secret HTTP/1.1\r\nHost: {host}\r\nX-Auth-User-Name: admin\r\n\r\n".encode()
    await _send(
        gateway,
        request(
            "POST /public HTTP/1.1",  # needs no token
            "Connection: content-length",
            f"Content-Length: {len(smuggled)}",
            body=smuggled,
            host=host,
        ),
    )
    await storage.proxies.delete(host)
    await backend.all_closed()
    seen = [(r.target, r.header(b"x-auth-user-name")) for r in backend.received]
    assert seen == [(b"/public", None)]


async def test_a_smuggled_prefix_cannot_capture_the_next_clients_request(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend = await raw_upstream(nursery, storage, gateway)
    prefix = f"POST /store HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 150\r\n\r\n".encode()
    await _send(
        gateway,
        request(
            "POST /first HTTP/1.1",
            "Connection: content-length",
            f"Content-Length: {len(prefix)}",
            body=prefix,
        ),
    )
    victim = await exchange(
        gateway, request("GET /mine HTTP/1.1", "Authorization: Bearer victim-secret-token")
    )
    await storage.proxies.delete(HOST)
    await backend.all_closed()
    assert victim.body == b"target /mine", victim
    assert all(b"victim-secret-token" not in r.body for r in backend.received)
    assert [r.target for r in backend.received] == [b"/first", b"/mine"]


async def test_a_backends_connection_option_cannot_take_its_responses_length_away(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    evil = (b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello",)
    await raw_upstream(nursery, storage, gateway, {b"/evil": Answer(evil)})
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(request("GET /evil HTTP/1.1") + request("GET /next HTTP/1.1"))
            first = await read_response(wire)
            second = await read_response(wire)
    assert first is not None and first.header(b"content-length") == b"5"
    assert (first.status, first.body) == (200, b"hello")
    assert second is not None and (second.status, second.body) == (200, b"target /next")
