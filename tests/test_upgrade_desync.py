"""A request that asks to switch protocols declares no body: llhttp hands over none after a
switching head (a CONNECT, an `Upgrade`), so a body one declared never went upstream, while the
gateway forwarded its Content-Length and counted the request as done. The backend answered at
once (a 405), the upstream connection went back to the pool still waiting for that body, and the
next request written on it was read as that body and, inside it, as requests of their own: a
protected path with a forged identity header, answered to the attacker; or a slow answer handed
to the next client on the pool. Both attacks are sent here on the wire."""

from __future__ import annotations

import pytest
import trio

from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests.test_dataplane import create_proxy
from tests.test_http_conformance import TIMEOUT, Wire, client, request, response, serve_raw
from tests.test_request_wire import until_up

# --- CONNECT with a Content-Length: the body the backend is told of never comes ----------------


class FramingBackend:
    """An HTTP/1.1 backend that frames every request by its Content-Length, as RFC 9112 says,
    and answers a method it does not serve (CONNECT) with 405 at once, before reading the
    body (as Quart/hypercorn, Flask and most frameworks do), then reads and drops that body.
    Every other request is answered 200 with what it saw. Records every request it read."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bytes, list[bytes]]] = []

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_raw(self._connection, task_status)

    async def _connection(self, stream: trio.SocketStream) -> None:
        wire = Wire(stream)
        try:
            while (lines := await wire.head()) is not None:
                method, target, _ = lines[0].split(b" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                self.seen.append((method, target, lines[1:]))
                if method in (b"CONNECT", b"PUT"):
                    await wire.send(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    await wire.exactly(length)
                    continue
                await wire.exactly(length)
                if target.startswith(b"/slow"):
                    await trio.sleep(1)
                body = b"%s %s " % (method, target) + b"|".join(lines[1:])
                await wire.send(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def _public_post(host: str, body: bytes) -> bytes:
    return request("POST /public HTTP/1.1", f"Content-Length: {len(body)}", host=host, body=body)


async def _upstream_head_length(gateway: Ready, backend: FramingBackend, post: bytes) -> int:
    """How long the head the gateway writes upstream for `post` is (the attacker's own backend
    behind the same gateway shows it, or a few tries find it)."""
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(post)
            assert (await response(wire)).status == 200
    method, target, fields = backend.seen[-1]
    start = len(b"%s %s HTTP/1.1\r\n" % (method, target))
    return start + 2 + sum(len(line) + 2 for line in fields)


@pytest.mark.parametrize(
    "opening",
    [
        ("CONNECT /public HTTP/1.1",),
        ("PUT /public HTTP/1.1", "Connection: Upgrade", "Upgrade: h2c"),
        ("PUT /public HTTP/1.1", "Connection: Upgrade", "Upgrade: websocket"),
    ],
    ids=["connect", "upgrade-h2c", "upgrade-websocket"],
)
async def test_connect_with_a_body_cannot_desync_the_upstream_connection_and_skip_auth(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, opening: tuple[str, ...]
) -> None:
    """An anonymous client sends `CONNECT /public HTTP/1.1` (or any request with
    `Connection: Upgrade` and an `Upgrade` field, h2c or websocket) with `Content-Length: N` to a
    protected proxy (the path is auth-excluded). llhttp stops at a CONNECT head (a tunnel), so
    the gateway reads no body, yet it forwards the head with its Content-Length and counts the
    request as complete; the backend answers 405 and the upstream connection goes back to the
    pool while the backend still waits for N bytes of body. The client's next request (to the
    public path, with a body) is written on that connection: its head becomes the CONNECT's
    body, and its body, a whole request for a protected path with a forged identity header, is
    read by the backend as a request of its own, whose answer the gateway relays."""
    backend = FramingBackend()
    port = await nursery.start(backend.serve)
    host = "desync.test"
    await create_proxy(
        storage,
        host,
        port,
        auth_enabled=True,
        auth_required_users=["*"],
        auth_excluded_paths=["/public"],
    )
    await until_up(gateway, host)
    smuggled = (
        f"GET /secret HTTP/1.1\r\nHost: {host}\r\nX-Auth-User-Name: admin\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    head_length = await _upstream_head_length(gateway, backend, _public_post(host, smuggled))
    with trio.fail_after(TIMEOUT):  # a protected path without a token is refused
        async with client(gateway) as wire:
            await wire.send(request("GET /secret HTTP/1.1", host=host))
            assert (await response(wire)).status == 401
    assert all(target != b"/secret" for _, target, _ in backend.seen)

    connect = request(*opening, f"Content-Length: {head_length}", host=host)
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(connect)
            first = await response(wire)
        async with client(gateway) as wire:
            await wire.send(_public_post(host, smuggled))
            second = await response(wire)
    assert first.status == 400, first.body
    reached = [(target, fields) for _, target, fields in backend.seen if target == b"/secret"]
    assert not reached, (
        "a request for a protected path reached the backend without a token, with a forged "
        f"identity header, and its answer went to the client: {reached} / {second.body[:200]!r}"
    )


async def test_a_desynced_upstream_connection_cannot_hand_one_clients_answer_to_another(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    """The same desync (a PUT with `Connection: Upgrade`, `Upgrade: h2c` and a Content-Length
    whose body never goes upstream), then a public POST whose body holds a request for a slow
    path after a fast one: the POST gets the fast one's answer, the slow one's arrives after
    the gateway has pooled the connection again, and the next client's request on that pool
    (another user's) is answered with it."""
    backend = FramingBackend()
    port = await nursery.start(backend.serve)
    host = "poison.test"
    await create_proxy(storage, host, port)
    await until_up(gateway, host)
    smuggled = (
        f"GET /fast HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
        f"GET /slow/attacker HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    post = _public_post(host, b"p" * len(smuggled))
    head_length = await _upstream_head_length(gateway, backend, post)
    opening = request(
        "PUT /public HTTP/1.1",
        "Connection: Upgrade",
        "Upgrade: h2c",
        f"Content-Length: {head_length}",
        host=host,
    )
    with trio.fail_after(TIMEOUT):
        async with client(gateway) as wire:
            await wire.send(opening)
            assert (await response(wire)).status == 400
        # the attacker's POST: its answer is the smuggled request's, a second after
        async with client(gateway) as wire:
            await wire.send(_public_post(host, smuggled))
            mine = await response(wire)
        await trio.sleep(0.3)
        # another user, on another connection, asks for its own page
        async with client(gateway) as wire:
            await wire.send(request("GET /victim-page HTTP/1.1", host=host))
            theirs = await response(wire)
    assert mine.status == 200
    assert theirs.body.startswith(b"GET /victim-page "), (
        f"another client's request was answered with someone else's response: {theirs.body[:120]!r}"
    )
