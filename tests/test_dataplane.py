"""The proxy data plane end to end: real gateway, real backends, real TCP."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests.backend import pattern, serve_backend
from tests.eventually import eventually


@pytest.fixture
async def backend(nursery: trio.Nursery) -> int:
    port: int = await nursery.start(functools.partial(serve_backend, "one"))
    return port


@pytest.fixture
async def public(gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the public HTTP port. One connection serves one hostname (another gets a
    421), so each request here uses a new connection unless a test opts into keep-alive."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.http_port}", timeout=30, limits=limits
    ) as client:
        yield client


async def create_proxy(storage: Storage, hostname: str, port: int, **fields: object) -> None:
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {"hostname": hostname, "target_url": f"http://127.0.0.1:{port}", **fields}
        )
    )


async def wait_until_served(
    public: httpx.AsyncClient, hostname: str, path: str = "/echo"
) -> httpx.Response:

    async def served() -> httpx.Response | None:
        response = await public.get(path, headers={"Host": hostname})
        if response.status_code != 404 or response.headers.get("x-backend"):
            return response
        return None

    return await eventually(served, what=f"{hostname}{path} served")


async def test_created_proxy_serves_and_deleted_one_404s(
    storage: Storage, public: httpx.AsyncClient, backend: int
) -> None:
    unknown = await public.get("/echo", headers={"Host": "app.example.com"})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_host"

    await create_proxy(storage, "app.example.com", backend)
    response = await wait_until_served(public, "app.example.com")
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["backend"] == "one"
    assert echoed["headers"]["host"] == "app.example.com"
    assert echoed["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert echoed["headers"]["x-forwarded-host"] == "app.example.com"
    assert echoed["headers"]["x-forwarded-proto"] == "http"

    async with storage.redis.pipeline(transaction=True) as pipe:
        from oauthproxy.storage.proxies import ProxyRepository

        target = await storage.proxies.get("app.example.com")
        assert target is not None
        ProxyRepository.queue_delete(pipe, target)
    statuses: list[int] = []

    async def deleted() -> httpx.Response | None:
        response = await public.get("/echo", headers={"Host": "app.example.com"})
        statuses.append(response.status_code)
        return response if response.status_code == 404 else None

    gone = await eventually(deleted, what="app.example.com deleted")
    assert set(statuses[:-1]) <= {200}  # served until it was gone
    assert gone.json()["error"] == "unknown_host"


async def test_streams_a_large_download_intact(
    storage: Storage, public: httpx.AsyncClient, backend: int
) -> None:
    await create_proxy(storage, "big.example.com", backend)
    await wait_until_served(public, "big.example.com")
    size = 50 * 1024 * 1024 + 123
    digest = hashlib.sha256()
    received = 0
    async with public.stream("GET", f"/bytes/{size}", headers={"Host": "big.example.com"}) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_raw():
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(pattern(size)).hexdigest()


async def test_update_swaps_the_target_in_place(
    nursery: trio.Nursery, storage: Storage, public: httpx.AsyncClient, backend: int
) -> None:
    second: int = await nursery.start(functools.partial(serve_backend, "two"))
    await create_proxy(storage, "swap.example.com", backend)
    assert (await wait_until_served(public, "swap.example.com")).json()["backend"] == "one"
    target = await storage.proxies.get("swap.example.com")
    assert target is not None
    changed = {
        "target_url": f"http://127.0.0.1:{second}",
        "custom_headers": {"X-Team": "blue"},
        "custom_response_headers": {"X-Served-By": "oauthproxy"},
        "preserve_host_header": False,
    }
    await storage.proxies.update(ProxyTarget.model_validate({**target.model_dump(), **changed}))

    async def from_the_second() -> httpx.Response | None:
        response = await public.get("/echo", headers={"Host": "swap.example.com"})
        return response if response.json()["backend"] == "two" else None

    response = await eventually(from_the_second, what="swap.example.com served by two")
    echoed = response.json()
    assert echoed["headers"]["x-team"] == "blue"
    assert echoed["headers"]["host"] == f"127.0.0.1:{second}"
    assert response.headers["x-served-by"] == "oauthproxy"


async def test_forged_forwarding_and_identity_headers_are_replaced(
    storage: Storage, public: httpx.AsyncClient, backend: int
) -> None:
    await create_proxy(storage, "honest.example.com", backend)
    await wait_until_served(public, "honest.example.com")
    forged = {
        "Host": "honest.example.com",
        "X-Forwarded-For": "6.6.6.6",
        "X-Real-IP": "6.6.6.6",
        "X-Forwarded-Proto": "https",
        "Forwarded": "for=6.6.6.6",
        "X-Auth-User-Id": "admin",
        "X-Auth-Email": "root@example.com",
        "X-Forwarded-Host": "evil.example",
        # the rest of the family: Spring, Express, Werkzeug's ProxyFix build URLs from them
        "X-Forwarded-Port": "444",
        "X-Forwarded-Prefix": "/evil",
        "X-Forwarded-Server": "evil.example",
        "X-Forwarded-Ssl": "on",
        "X-Forwarded-Scheme": "https",
    }
    echoed = (await public.get("/echo", headers=forged)).json()["headers"]
    assert echoed["x-forwarded-for"] == "127.0.0.1"
    assert echoed["x-real-ip"] == "127.0.0.1"
    assert echoed["x-forwarded-proto"] == "http"
    assert echoed["x-forwarded-host"] == "honest.example.com"
    forwarded_family = {name for name in echoed if name.startswith("x-forwarded-")}
    assert forwarded_family == {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}
    assert "forwarded" not in echoed
    assert "x-auth-user-id" not in echoed
    assert "x-auth-email" not in echoed


async def test_trusted_proxy_chain_is_extended(
    nursery: trio.Nursery, storage: Storage, make_settings: object, backend: int
) -> None:
    from oauthproxy.serve import serve

    settings = make_settings(trusted_proxies=["127.0.0.0/8"])  # type: ignore[operator]
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    await create_proxy(storage, "chain.example.com", backend)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ready.http_port}") as client:
        await wait_until_served(client, "chain.example.com")
        headers = {"Host": "chain.example.com", "X-Forwarded-For": "203.0.113.7"}
        echoed = (await client.get("/echo", headers=headers)).json()["headers"]
    assert echoed["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"


async def test_streams_a_large_upload_intact(
    storage: Storage, public: httpx.AsyncClient, backend: int
) -> None:
    await create_proxy(storage, "up.example.com", backend)
    await wait_until_served(public, "up.example.com")
    size = 20 * 1024 * 1024 + 7

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            piece = pattern(min(1024 * 1024, size - sent))
            sent += len(piece)
            yield piece

    response = await public.post(
        "/upload",
        content=body(),
        headers={"Host": "up.example.com"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "length": size,
        "sha256": hashlib.sha256(pattern(size)).hexdigest(),
    }


async def test_sse_events_arrive_one_by_one(
    storage: Storage, public: httpx.AsyncClient, backend: int
) -> None:
    await create_proxy(storage, "events.example.com", backend)
    await wait_until_served(public, "events.example.com")
    arrivals: list[tuple[float, str]] = []
    async with public.stream("GET", "/sse", headers={"Host": "events.example.com"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                arrivals.append((trio.current_time(), line))
    assert [line for _, line in arrivals] == ["data: event 0", "data: event 1", "data: event 2"]
    # each event reached us before the next was written: they did not arrive in one batch
    assert arrivals[2][0] - arrivals[0][0] > 0.3


async def test_websocket_is_spliced_both_ways(
    storage: Storage, gateway: Ready, backend: int, public: httpx.AsyncClient
) -> None:
    import wsproto
    import wsproto.events as ws

    await create_proxy(storage, "ws.example.com", backend)
    await wait_until_served(public, "ws.example.com")
    stream = await trio.open_tcp_stream("127.0.0.1", gateway.http_port)
    connection = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await stream.send_all(connection.send(ws.Request(host="ws.example.com", target="/ws")))
    received: list[object] = []

    async def events_until(kind: type) -> None:
        with trio.fail_after(10):
            while not any(isinstance(e, kind) for e in received):
                connection.receive_data(await stream.receive_some(65536))
                received.extend(connection.events())

    await events_until(ws.AcceptConnection)
    await stream.send_all(connection.send(ws.TextMessage(data="hello")))
    await events_until(ws.TextMessage)
    texts = [e.data for e in received if isinstance(e, ws.TextMessage)]
    assert texts == ["echo: hello"]
    await stream.send_all(connection.send(ws.CloseConnection(code=1000)))
    await stream.aclose()


async def test_dead_upstream_is_a_502_and_slow_one_a_504(
    storage: Storage, make_settings: object, nursery: trio.Nursery, backend: int
) -> None:
    from oauthproxy.serve import serve
    from tests.conftest import free_port

    settings = make_settings(proxy_request_timeout=0.5, proxy_connect_timeout=0.5)  # type: ignore[operator]
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    await create_proxy(storage, "dead.example.com", free_port())
    await create_proxy(storage, "slow.example.com", backend)
    limits = httpx.Limits(max_keepalive_connections=0)
    base = f"http://127.0.0.1:{ready.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as c:
        await wait_until_served(c, "slow.example.com")

        async def known() -> httpx.Response | None:
            response = await c.get("/echo", headers={"Host": "dead.example.com"})
            return response if response.status_code != 404 else None

        dead = await eventually(known, what="dead.example.com known", within=5)
        assert dead.status_code == 502
        assert dead.json()["error"] == "bad_gateway"
        slow = await c.get("/slow/3.0", headers={"Host": "slow.example.com"})
        assert slow.status_code == 504
        assert slow.json()["error"] == "gateway_timeout"
        fine = await c.get("/echo", headers={"Host": "slow.example.com"})
        assert fine.status_code == 200


async def test_switching_host_on_one_connection_reaches_the_other_proxy(
    storage: Storage, public: httpx.AsyncClient, backend: int
) -> None:
    await create_proxy(storage, "first.example.com", backend)
    await create_proxy(storage, "second.example.com", backend)
    await wait_until_served(public, "first.example.com")
    await wait_until_served(public, "second.example.com")
    stream = await trio.open_tcp_stream("127.0.0.1", int(str(public.base_url.port)))
    await stream.send_all(
        b"GET /echo HTTP/1.1\r\nHost: first.example.com\r\n\r\n"
        b"GET /echo HTTP/1.1\r\nHost: second.example.com\r\n\r\n"
    )
    received = b""
    with trio.fail_after(10):
        while received.count(b"HTTP/1.1 ") < 2:
            chunk = await stream.receive_some(65536)
            assert chunk, received
            received += chunk
    assert received.startswith(b"HTTP/1.1 200")
    assert received.count(b"HTTP/1.1 200 ") == 2  # tests/test_host_switch.py: which backend
    await stream.aclose()


async def test_localhost_reaches_the_admin_api(public: httpx.AsyncClient) -> None:
    response = await public.get("/health", headers={"Host": "localhost"})
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


async def test_browsers_get_an_html_404(public: httpx.AsyncClient) -> None:
    response = await public.get("/", headers={"Host": "nowhere.example.com", "Accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "nowhere.example.com" in response.text


async def test_https_upstreams_are_verified_against_the_configured_ca(
    nursery: trio.Nursery, storage: Storage, make_settings: object, tmp_path: object
) -> None:
    from pathlib import Path

    from oauthproxy.serve import serve
    from tests.tls import make_pki

    pki = make_pki(Path(str(tmp_path)))
    secure: int = await nursery.start(
        functools.partial(serve_backend, "secure", tls=(str(pki.cert_file), str(pki.key_file)))
    )
    trusting = make_settings(upstream_ca_bundle=pki.ca_file)  # type: ignore[operator]
    ready: Ready = await nursery.start(
        lambda task_status: serve(trusting, handle_signals=False, task_status=task_status)
    )
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {"hostname": "secure.example.com", "target_url": f"https://127.0.0.1:{secure}"}
        )
    )
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{ready.http_port}", limits=limits
    ) as c:
        response = await wait_until_served(c, "secure.example.com")
        assert response.status_code == 200
        assert response.json()["backend"] == "secure"
        for _ in range(3):  # on the pooled TLS connection, checked before each use
            await trio.sleep(0.1)
            again = await c.get("/echo", headers={"Host": "secure.example.com"})
            assert again.status_code == 200, again.text
            assert again.json()["backend"] == "secure"


async def test_an_untrusted_upstream_certificate_is_a_502(
    nursery: trio.Nursery, storage: Storage, public: httpx.AsyncClient, tmp_path: object
) -> None:
    from pathlib import Path

    from tests.tls import make_pki

    pki = make_pki(Path(str(tmp_path)))
    secure: int = await nursery.start(
        functools.partial(serve_backend, "secure", tls=(str(pki.cert_file), str(pki.key_file)))
    )
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {"hostname": "mitm.example.com", "target_url": f"https://127.0.0.1:{secure}"}
        )
    )

    async def known() -> httpx.Response | None:
        response = await public.get("/echo", headers={"Host": "mitm.example.com"})
        return response if response.status_code != 404 else None

    response = await eventually(known, what="mitm.example.com known")
    assert response.status_code == 502
    assert response.json()["error"] == "bad_gateway"


async def test_delete_lets_requests_in_flight_finish(
    storage: Storage, public: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    from tests.test_drain import HeldBackend  # it imports this module

    backend = HeldBackend()
    await create_proxy(storage, "drain.example.com", await nursery.start(backend.serve))
    await wait_until_served(public, "drain.example.com")
    finished: list[httpx.Response] = []

    async def slow_request() -> None:
        finished.append(await public.get("/slow", headers={"Host": "drain.example.com"}))

    async with trio.open_nursery() as requests:
        requests.start_soon(slow_request)
        await backend.received.wait()  # the request is at the backend now, held there
        target = await storage.proxies.get("drain.example.com")
        assert target is not None
        await storage.proxies.delete("drain.example.com")

        async def gone() -> bool:
            after = await public.get("/echo", headers={"Host": "drain.example.com"})
            return after.status_code == 404

        await eventually(gone, what="drain.example.com deleted", within=5)
        backend.release.set()
    assert [(r.status_code, r.text) for r in finished] == [(200, "slow done")]


async def reset_or_closed(stream: trio.abc.Stream) -> str:
    """Read until the peer ends the connection: "reset" (RST) or "closed" (FIN; over TLS
    also without close_notify)."""
    while True:
        try:
            if not await stream.receive_some(65536):
                return "closed"
        except trio.BrokenResourceError as error:
            cause: BaseException | None = error
            while cause is not None and not isinstance(cause, ConnectionResetError):
                cause = cause.__cause__
            return "closed" if cause is None else "reset"


async def test_a_deleted_proxys_connections_close_at_once(
    storage: Storage, gateway: Ready, nursery: trio.Nursery
) -> None:
    """Once a deleted proxy's requests in flight have had their grace period, its connections
    close at once: not half-closed, then read from until the client closes (or a second
    passes). On the wire: a request held at the backend, and a pipelined one after it that
    the gateway has not read yet (it reads no more while it waits for an answer), so the
    socket closes with unread input, which the kernel answers with RST; a gentle close would
    have sent FIN and drained it."""
    from tests.test_drain import HeldBackend  # it imports this module

    backend = HeldBackend()
    await create_proxy(storage, "gone.example.com", await nursery.start(backend.serve))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as public:
        await wait_until_served(public, "gone.example.com")
    stream = await trio.open_tcp_stream("127.0.0.1", gateway.http_port)
    held = b"GET /slow HTTP/1.1\r\nHost: gone.example.com\r\n\r\n"
    await stream.send_all(held)
    with trio.fail_after(30):
        await backend.received.wait()  # the gateway now waits for the answer, reading nothing
        await stream.send_all(b"GET /ok HTTP/1.1\r\nHost: gone.example.com\r\n\r\n")
        await storage.proxies.delete("gone.example.com")
        assert await reset_or_closed(stream) == "reset"
    await stream.aclose()
