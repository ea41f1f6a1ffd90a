"""The world of the tenant tests: a real gateway, real backends, owners A and B and the admin.

B (bob) owns `bob.example.com` (to his backend, with a route `/echo/bob-route/` to his second
backend, and a configured header `X-Key`), `bob-secret.example.com` (auth-protected) and the
service `bob-svc`. A (alice) owns `alice.example.com`. `refused_and_unchanged` checks a refusal's
status and JSON body, then that B's records and B's traffic through the public port are as they
were. It first waits for a change the admin makes to show in the data plane (`settle`): the
gateway applies changes in order, so anything the refused request had changed would be in effect
by then.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.serve import Ready
from tests.backend import serve_backend

TARGETS = "/api/v1/proxy/targets/"
ROUTES = "/api/v1/routes/"
EXTERNAL = "/api/v1/services/external"
RESOURCES = "/api/v1/resources/"
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)
METADATA = "169.254.169.254"


@dataclass
class World:
    api: httpx.AsyncClient
    alice: httpx.AsyncClient
    bob: httpx.AsyncClient
    public: httpx.AsyncClient
    gateway: Ready
    ports: dict[str, int]
    bob_records: dict[str, Any]
    markers: itertools.count[int]

    def url(self, backend: str) -> str:
        return f"http://127.0.0.1:{self.ports[backend]}"


@asynccontextmanager
async def owner(
    api: httpx.AsyncClient, gateway: Ready, name: str
) -> AsyncIterator[httpx.AsyncClient]:
    created = await api.post("/api/v1/tokens/generate", json={"name": name})
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['token']}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as client:
        yield client


async def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def proxy(client: httpx.AsyncClient, hostname: str, target: str, **fields: Any) -> None:
    body = {"hostname": hostname, "target_url": target, "enable_https": False, **fields}
    await created(await client.post(TARGETS, json=body))


async def backend_of(public: httpx.AsyncClient, host: str, path: str = "/echo/x") -> str | None:
    response = await public.get(path, headers={"Host": host})
    name: str | None = response.headers.get("x-backend")
    return name


async def served_by(public: httpx.AsyncClient, host: str, backend: str) -> None:
    with trio.fail_after(10):
        while await backend_of(public, host) != backend:  # noqa: ASYNC110
            await trio.sleep(0.01)


@pytest.fixture
async def world(
    nursery: trio.Nursery, gateway: Ready, api: httpx.AsyncClient
) -> AsyncIterator[World]:
    ports = {}
    for name in ("alice", "bob", "bob-side", "attacker", "marker"):
        ports[name] = await nursery.start(functools.partial(serve_backend, name))
    base = f"http://127.0.0.1:{gateway.http_port}"
    async with (
        owner(api, gateway, "alice") as alice,
        owner(api, gateway, "bob") as bob,
        httpx.AsyncClient(base_url=base, timeout=30, limits=NO_KEEPALIVE) as public,
    ):
        world = World(api, alice, bob, public, gateway, ports, {}, itertools.count())
        await proxy(alice, "alice.example.com", world.url("alice"))
        await proxy(bob, "bob.example.com", world.url("bob"), custom_headers={"X-Key": "s3cret"})
        await proxy(bob, "bob-secret.example.com", world.url("bob"))
        await created(
            await bob.post(
                f"{TARGETS}bob-secret.example.com/auth", json={"auth_required_users": ["*"]}
            )
        )
        await created(
            await bob.post(
                EXTERNAL, json={"service_name": "bob-svc", "target_url": world.url("bob")}
            )
        )
        await created(
            await bob.post(
                ROUTES,
                json={
                    "route_id": "bob-route",
                    "path_pattern": "/echo/bob-route/",
                    "target_type": "url",
                    "target_value": world.url("bob-side"),
                    "scope": "proxy",
                    "proxy_hostnames": ["bob.example.com"],
                },
            )
        )
        world.bob_records = await bob_records(world)
        await served_by(public, "bob.example.com", "bob")
        await bob_traffic_is_unchanged(world)
        yield world


async def bob_records(world: World) -> dict[str, Any]:
    """Everything B sees of his own records, as B sees it."""
    bob = world.bob
    return {
        "proxies": (await bob.get(TARGETS)).json(),
        "routes": (await bob.get(ROUTES)).json(),
        "services": (await bob.get(EXTERNAL)).json(),
    }


async def settle(world: World) -> None:
    """Wait until a change made after everything before it is served by the data plane."""
    hostname = f"marker-{next(world.markers)}.example.com"
    await proxy(world.api, hostname, world.url("marker"))
    await served_by(world.public, hostname, "marker")


async def bob_traffic_is_unchanged(world: World) -> None:
    public = world.public
    mine = (await public.get("/echo/x", headers={"Host": "bob.example.com"})).json()
    assert (mine["backend"], mine["headers"]["x-key"]) == ("bob", "s3cret")
    assert await backend_of(public, "bob.example.com", "/echo/bob-route/1") == "bob-side"
    assert await backend_of(public, "bob.example.com", "/echo/other") == "bob"
    protected = await public.get("/echo/x", headers={"Host": "bob-secret.example.com"})
    assert protected.status_code == 401
    assert "x-backend" not in protected.headers


async def refused_and_unchanged(
    world: World, response: httpx.Response, status: int, error: str, field: str
) -> None:
    """The request was refused as expected, and B's records and traffic are as they were."""
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["error"], body.get("field")) == (error, field), body
    assert body["detail"]
    await settle(world)
    assert await bob_records(world) == world.bob_records
    await bob_traffic_is_unchanged(world)


def missing(kind: str, name: str) -> dict[str, str]:
    return {"error": "not_found", "detail": f"{kind} {name!r} not found", "field": kind}


def route(**fields: Any) -> dict[str, Any]:
    values = {
        "path_pattern": "/echo/",
        "target_type": "url",
        "target_value": "http://127.0.0.1:1",
        "scope": "proxy",
        "proxy_hostnames": ["alice.example.com"],
    }
    return {**values, **fields}
