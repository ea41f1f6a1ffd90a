"""Routes end to end: each target type, priority, methods, and changes taking effect live."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from oauthproxy.serve import Ready
from tests.backend import serve_backend

NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


@pytest.fixture
async def backends(nursery: trio.Nursery) -> dict[str, int]:
    ports = {}
    for name in ("main", "side", "other"):
        ports[name] = await nursery.start(functools.partial(serve_backend, name))
    return ports


@pytest.fixture
async def public(gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{gateway.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=NO_KEEPALIVE) as client:
        yield client


async def _ok(response: httpx.Response) -> dict[str, object]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, object] = response.json()
    return body


async def _proxy(api: httpx.AsyncClient, hostname: str, port: int) -> None:
    await _ok(
        await api.post(
            "/api/v1/proxy/targets/",
            json={"hostname": hostname, "target_url": f"http://127.0.0.1:{port}"},
        )
    )


async def _route(api: httpx.AsyncClient, **fields: object) -> str:
    route_id = (await _ok(await api.post("/api/v1/routes/", json=fields)))["route_id"]
    assert isinstance(route_id, str)
    return route_id


async def _backend_for(
    public: httpx.AsyncClient, host: str, path: str, method: str = "GET"
) -> str | None:
    response = await public.request(method, path, headers={"Host": host})
    backend: str | None = response.headers.get("x-backend")
    return backend


async def _eventually(
    public: httpx.AsyncClient, host: str, path: str, expected: str, method: str = "GET"
) -> None:
    with trio.fail_after(10):
        while await _backend_for(public, host, path, method) != expected:  # noqa: ASYNC110
            await trio.sleep(0.01)


@pytest.mark.parametrize("kind", ["url", "port", "service", "hostname"])
async def test_each_target_type_reaches_its_backend(
    api: httpx.AsyncClient, public: httpx.AsyncClient, backends: dict[str, int], kind: str
) -> None:
    await _proxy(api, "app.example.com", backends["main"])
    side = backends["side"]
    if kind == "service":
        await _ok(
            await api.post(
                "/api/v1/services/external",
                json={"service_name": "side", "target_url": f"http://127.0.0.1:{side}"},
            )
        )
    if kind == "hostname":
        await _proxy(api, "side.example.com", side)
    value = {
        "url": f"http://127.0.0.1:{side}",
        "port": str(side),
        "service": "side",
        "hostname": "side.example.com",
    }[kind]
    await _eventually(public, "app.example.com", "/echo/x", "main")
    await _route(api, path_pattern="/echo/special", target_type=kind, target_value=value)
    await _eventually(public, "app.example.com", "/echo/special/1", "side")
    assert await _backend_for(public, "app.example.com", "/echo/plain") == "main"
    echoed = (await public.get("/echo/special/1?q=2", headers={"Host": "app.example.com"})).json()
    assert echoed["path"] == "/echo/special/1"
    assert echoed["query"] == "q=2"


async def test_priority_methods_and_live_changes(
    api: httpx.AsyncClient, public: httpx.AsyncClient, backends: dict[str, int]
) -> None:
    await _proxy(api, "app.example.com", backends["main"])
    base = "http://127.0.0.1:"
    low = await _route(
        api,
        path_pattern="/echo/",
        target_type="url",
        target_value=f"{base}{backends['side']}",
        priority=10,
    )
    await _route(
        api,
        path_pattern="/echo/",
        target_type="url",
        target_value=f"{base}{backends['other']}",
        priority=90,
        methods=["POST"],
    )
    await _eventually(public, "app.example.com", "/echo/a", "side")
    await _eventually(public, "app.example.com", "/echo/a", "other", method="POST")

    await _ok(await api.put(f"/api/v1/routes/{low}", json={"enabled": False}))
    await _eventually(public, "app.example.com", "/echo/a", "main")

    await _ok(
        await api.put("/api/v1/proxy/targets/app.example.com/routes", json={"route_mode": "none"})
    )
    await _eventually(public, "app.example.com", "/echo/a", "main", method="POST")


async def test_regex_and_proxy_scope(
    api: httpx.AsyncClient, public: httpx.AsyncClient, backends: dict[str, int]
) -> None:
    await _proxy(api, "one.example.com", backends["main"])
    await _proxy(api, "two.example.com", backends["main"])
    await _route(
        api,
        path_pattern=r"^/echo/v[0-9]+/",
        is_regex=True,
        target_type="port",
        target_value=str(backends["side"]),
        scope="proxy",
        proxy_hostnames=["two.example.com"],
    )
    await _eventually(public, "two.example.com", "/echo/v2/x", "side")
    assert await _backend_for(public, "two.example.com", "/echo/vx/x") == "main"
    assert await _backend_for(public, "one.example.com", "/echo/v2/x") == "main"


async def test_a_catastrophic_regex_route_cannot_hang_the_gateway(
    api: httpx.AsyncClient, public: httpx.AsyncClient, backends: dict[str, int]
) -> None:
    """One tenant's `(a+)+$` route and a long path that makes a backtracking engine run for
    ages; the request itself is answered, and so is another tenant's, alongside it."""
    await _proxy(api, "evil.example.com", backends["main"])
    await _proxy(api, "other.example.com", backends["other"])
    await _route(
        api,
        path_pattern=r"^/echo/(a+)+$",
        is_regex=True,
        target_type="port",
        target_value=str(backends["side"]),
        scope="proxy",
        proxy_hostnames=["evil.example.com"],
    )
    await _eventually(public, "evil.example.com", "/echo/aaa", "side")
    await _eventually(public, "other.example.com", "/echo", "other")
    answers: dict[str, str | None] = {}

    async def send(name: str, host: str, path: str) -> None:
        answers[name] = await _backend_for(public, host, path)

    with trio.fail_after(30):  # generous: completion is what is checked, not speed
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, "evil", "evil.example.com", "/echo/" + "a" * 5000 + "!")
            nursery.start_soon(send, "other", "other.example.com", "/echo")
    assert answers == {"evil": "main", "other": "other"}


async def test_unresolvable_route_target_is_a_502(
    api: httpx.AsyncClient, public: httpx.AsyncClient, backends: dict[str, int]
) -> None:
    await _proxy(api, "app.example.com", backends["main"])
    await _route(api, path_pattern="/echo/gone", target_type="service", target_value="nosuch")
    with trio.fail_after(10):
        while True:
            response = await public.get("/echo/gone", headers={"Host": "app.example.com"})
            if response.status_code == 502:
                break
            await trio.sleep(0.01)
    assert response.json()["error"] == "bad_gateway"


async def test_create_update_delete_through_the_api_with_live_traffic(
    api: httpx.AsyncClient, public: httpx.AsyncClient, backends: dict[str, int]
) -> None:
    await _proxy(api, "live.example.com", backends["main"])
    await _eventually(public, "live.example.com", "/echo", "main")
    moved = {"target_url": f"http://127.0.0.1:{backends['side']}"}
    await _ok(await api.put("/api/v1/proxy/targets/live.example.com", json=moved))
    await _eventually(public, "live.example.com", "/echo", "side")
    assert (await api.delete("/api/v1/proxy/targets/live.example.com")).status_code == 200
    with trio.fail_after(10):
        while True:
            gone = await public.get("/echo", headers={"Host": "live.example.com"})
            if gone.status_code == 404:
                break
            assert gone.status_code == 200
    assert gone.json()["error"] == "unknown_host"
