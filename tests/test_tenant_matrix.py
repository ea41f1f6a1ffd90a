"""The tenant model on the wire: owner A against owner B's records and hostnames, and an owner
token against every admin-only operation, each refused with its status and JSON body, and B's
traffic through the gateway's public port unchanged afterwards.

B (bob) owns `bob.example.com` (to his backend, with a route `/echo/bob-route/` to his second
backend), `bob-secret.example.com` (auth-protected) and the service `bob-svc`. A (alice) owns
`alice.example.com`. Every refused request is followed by a change the admin makes and the data
plane shows (`settle`): the gateway applies changes in order, so anything the refused request
had changed would be in effect by then.
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

from oauthproxy.serve import Ready, serve
from oauthproxy.storage import Storage
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


# --- A against B's records: each reads as missing, for every operation --------------------------

BOB_PROXY = f"{TARGETS}bob.example.com"

PROXY_OPERATIONS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", BOB_PROXY, None),
    ("PUT", BOB_PROXY, {"enabled": False}),
    ("PUT", BOB_PROXY, {"target_url": "http://127.0.0.1:1"}),
    ("PUT", BOB_PROXY, {"custom_headers": {}}),
    ("DELETE", BOB_PROXY, None),
    ("GET", f"{BOB_PROXY}/auth", None),
    ("POST", f"{BOB_PROXY}/auth", {"auth_required_users": ["*"]}),
    ("DELETE", f"{BOB_PROXY}/auth", None),
    ("GET", f"{BOB_PROXY}/mcp", None),
    ("POST", f"{BOB_PROXY}/mcp", {}),
    ("DELETE", f"{BOB_PROXY}/mcp", None),
    ("GET", f"{BOB_PROXY}/routes", None),
    ("PUT", f"{BOB_PROXY}/routes", {"route_mode": "none"}),
]


@pytest.mark.parametrize(("method", "path", "body"), PROXY_OPERATIONS)
async def test_a_cannot_touch_bs_proxy(
    world: World, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await world.alice.request(method, path, json=body)
    assert response.json() == missing("proxy", "bob.example.com")
    await refused_and_unchanged(world, response, 404, "not_found", "proxy")


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("PUT", {"enabled": False}),
        ("PUT", {"target_value": "http://127.0.0.1:1"}),
        ("DELETE", None),
    ],
)
async def test_a_cannot_touch_bs_route(
    world: World, method: str, body: dict[str, Any] | None
) -> None:
    response = await world.alice.request(method, f"{ROUTES}bob-route", json=body)
    assert response.json() == missing("route", "bob-route")
    await refused_and_unchanged(world, response, 404, "not_found", "route")


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("PUT", {"description": "mine"}),
        ("PUT", {"target_url": "http://127.0.0.1:1"}),
        ("DELETE", None),
    ],
)
async def test_a_cannot_touch_bs_service(
    world: World, method: str, body: dict[str, Any] | None
) -> None:
    response = await world.alice.request(method, f"{EXTERNAL}/bob-svc", json=body)
    assert response.json() == missing("service", "bob-svc")
    await refused_and_unchanged(world, response, 404, "not_found", "service")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (TARGETS, {"hostname": "bob.example.com", "target_url": "http://127.0.0.1:1"}, "hostname"),
        (TARGETS, {"hostname": "BOB.example.com.", "target_url": "http://127.0.0.1:1"}, "hostname"),
        (EXTERNAL, {"service_name": "bob-svc", "target_url": "http://127.0.0.1:1"}, "service_name"),
        (ROUTES, {"route_id": "bob-route", "path_pattern": "/x/"}, "route_id"),
    ],
)
async def test_a_cannot_create_over_bs_names(
    world: World, path: str, body: dict[str, Any], field: str
) -> None:
    """Names are unique across owners: taking B's is a conflict, and B's record stays B's."""
    if path == ROUTES:
        body = route(**body)
    response = await world.alice.post(path, json=body)
    await refused_and_unchanged(world, response, 409, "conflict", field)


async def test_lists_show_a_only_her_own_records(world: World) -> None:
    alice = world.alice
    assert [p["hostname"] for p in (await alice.get(TARGETS)).json()] == ["alice.example.com"]
    assert (await alice.get(ROUTES)).json() == []
    assert (await alice.get(f"{ROUTES}formatted")).text.endswith("0 routes\n")
    assert (await alice.get(EXTERNAL)).json() == []
    assert (await alice.get("/api/v1/services/unified")).json() == []
    assert (await alice.get("/api/v1/services/")).json() == []
    everything = [p["hostname"] for p in (await world.api.get(TARGETS)).json()]
    assert {"alice.example.com", "bob.example.com", "bob-secret.example.com"} <= set(everything)
    assert [r["route_id"] for r in (await world.api.get(ROUTES)).json()] == ["bob-route"]
    assert "bob-route" in (await world.api.get(f"{ROUTES}formatted")).text
    # B's configured header values (secrets) reach B and the admin, no one else.
    for client in (world.api, world.bob):
        shown = (await client.get(BOB_PROXY)).json()
        assert shown["custom_headers"] == {"X-Key": "s3cret"}


# --- admin-only operations ----------------------------------------------------------------------

ADMIN_ONLY: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", RESOURCES, None),
    ("POST", RESOURCES, {"uri": "https://bob.example.com"}),
    ("POST", f"{RESOURCES}auto-register", None),
    ("GET", f"{RESOURCES}https%3A%2F%2Fbob.example.com", None),
    ("PUT", f"{RESOURCES}https%3A%2F%2Fbob.example.com", {"name": "mine"}),
    ("DELETE", f"{RESOURCES}https%3A%2F%2Fbob.example.com", None),
    ("POST", f"{RESOURCES}https%3A%2F%2Fbob.example.com/validate-token", {"token": "x"}),
    ("POST", "/api/v1/tokens/generate", {"name": "mallory"}),
    ("DELETE", "/api/v1/tokens/bob", None),
    ("POST", "/api/v1/cleanup/orphaned", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ONLY)
async def test_admin_only_operations_refuse_an_owner_token(
    world: World, method: str, path: str, body: dict[str, Any] | None
) -> None:
    await created(await world.api.post(RESOURCES, json={"uri": "https://bob.example.com"}))
    resources = (await world.api.get(RESOURCES)).json()
    response = await world.alice.request(method, path, json=body)
    await refused_and_unchanged(world, response, 403, "forbidden", "Authorization")
    assert (await world.api.get(RESOURCES)).json() == resources
    assert (await world.bob.get("/api/v1/tokens/info")).status_code == 200


def route(**fields: Any) -> dict[str, Any]:
    values = {
        "path_pattern": "/echo/",
        "target_type": "url",
        "target_value": "http://127.0.0.1:1",
        "scope": "proxy",
        "proxy_hostnames": ["alice.example.com"],
    }
    return {**values, **fields}


async def test_global_route_hijack_is_refused(world: World) -> None:
    """An owner's global route, priority 1000 on `/`, would take every hostname's traffic."""
    hijack = route(
        path_pattern="/",
        priority=1000,
        scope="global",
        proxy_hostnames=[],
        target_value=world.url("attacker"),
    )
    response = await world.alice.post(ROUTES, json=hijack)
    await refused_and_unchanged(world, response, 403, "forbidden", "scope")
    assert await backend_of(world.public, "alice.example.com") == "alice"


async def test_a_route_on_bs_hostname_is_refused(world: World) -> None:
    takeover = route(proxy_hostnames=["bob.example.com"], target_value=world.url("attacker"))
    response = await world.alice.post(ROUTES, json=takeover)
    await refused_and_unchanged(world, response, 403, "forbidden", "proxy_hostnames")


async def test_a_hostname_route_to_bs_protected_proxy_is_refused(world: World) -> None:
    """Routed by hostname, A's request would reach B's backend past B's auth."""
    bypass = route(target_type="hostname", target_value="bob-secret.example.com")
    response = await world.alice.post(ROUTES, json=bypass)
    await refused_and_unchanged(world, response, 403, "forbidden", "target_value")
    assert await backend_of(world.public, "alice.example.com", "/echo/secret") == "alice"


@pytest.mark.parametrize("service", ["bob-svc", "api"])
async def test_a_service_route_to_a_service_a_does_not_own_is_refused(
    world: World, service: str
) -> None:
    response = await world.alice.post(
        ROUTES, json=route(target_type="service", target_value=service)
    )
    await refused_and_unchanged(world, response, 403, "forbidden", "target_value")
    assert await backend_of(world.public, "alice.example.com") == "alice"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scope": "global"}, "scope"),
        ({"proxy_hostnames": ["alice.example.com", "bob.example.com"]}, "proxy_hostnames"),
        ({"target_type": "hostname", "target_value": "bob-secret.example.com"}, "target_value"),
        ({"target_type": "service", "target_value": "bob-svc"}, "target_value"),
    ],
)
async def test_updating_a_route_is_checked_like_creating_one(
    world: World, change: dict[str, Any], field: str
) -> None:
    mine = await created(
        await world.alice.post(ROUTES, json=route(route_id="mine", target_value=world.url("alice")))
    )
    response = await world.alice.put(f"{ROUTES}mine", json=change)
    await refused_and_unchanged(world, response, 403, "forbidden", field)
    assert (await world.alice.get(f"{ROUTES}mine")).json() == mine


async def test_a_may_route_her_own_hostname_to_her_own_things(world: World) -> None:
    alice = world.alice
    await proxy(alice, "alice-side.example.com", world.url("attacker"))
    await created(
        await alice.post(
            EXTERNAL, json={"service_name": "alice-svc", "target_url": world.url("marker")}
        )
    )
    await created(
        await alice.post(
            ROUTES,
            json=route(
                path_pattern="/echo/h/",
                target_type="hostname",
                target_value="alice-side.example.com",
            ),
        )
    )
    await created(
        await alice.post(
            ROUTES,
            json=route(path_pattern="/echo/s/", target_type="service", target_value="alice-svc"),
        )
    )
    await settle(world)
    assert await backend_of(world.public, "alice.example.com", "/echo/h/1") == "attacker"
    assert await backend_of(world.public, "alice.example.com", "/echo/s/1") == "marker"
    await bob_traffic_is_unchanged(world)


@pytest.mark.parametrize("hostname", ["localhost", "auth.localhost"])
async def test_an_owner_cannot_claim_the_gateways_own_hostnames(
    world: World, hostname: str
) -> None:
    """The admin API's hostname and the OAuth issuer's carry every owner's tokens."""
    claim = {"hostname": hostname, "target_url": world.url("attacker"), "enable_https": False}
    response = await world.alice.post(TARGETS, json=claim)
    await refused_and_unchanged(world, response, 403, "forbidden", "hostname")
    assert (await world.api.get(f"{TARGETS}{hostname}")).status_code == 404
    health = await world.public.get("/health", headers={"Host": "localhost"})
    assert (health.status_code, health.headers.get("x-backend")) == (200, None)


async def test_a_route_cannot_outlive_its_proxy_and_wait_for_b_to_claim_the_name(
    world: World,
) -> None:
    """A scopes a route to her own proxy, deletes the proxy and waits: once B creates a proxy
    with that name, the route would send B's traffic to A's server."""
    alice, bob = world.alice, world.bob
    await proxy(alice, "soon-free.example.com", world.url("alice"))
    trap = route(
        route_id="trap",
        path_pattern="/",
        priority=1000,
        proxy_hostnames=["soon-free.example.com"],
        target_value=world.url("attacker"),
    )
    await created(await alice.post(ROUTES, json=trap))
    refused = await alice.delete(f"{TARGETS}soon-free.example.com")
    await refused_and_unchanged(world, refused, 409, "in_use", "hostname")
    assert "trap" in refused.json()["detail"]
    await settle(world)
    assert await backend_of(world.public, "soon-free.example.com") == "attacker"  # hers, still

    assert (await alice.delete(f"{ROUTES}trap")).status_code == 200
    assert (await alice.delete(f"{TARGETS}soon-free.example.com")).status_code == 200
    await proxy(bob, "soon-free.example.com", world.url("bob"))
    await served_by(world.public, "soon-free.example.com", "bob")


async def test_a_service_route_cannot_outlive_its_service(world: World) -> None:
    alice = world.alice
    await created(
        await alice.post(EXTERNAL, json={"service_name": "mine", "target_url": world.url("alice")})
    )
    to_mine = route(route_id="to-mine", target_type="service", target_value="mine")
    await created(await alice.post(ROUTES, json=to_mine))
    refused = await alice.delete(f"{EXTERNAL}/mine")
    await refused_and_unchanged(world, refused, 409, "in_use", "service_name")
    assert (await alice.get(f"{EXTERNAL}/mine")).status_code == 200
    assert (await alice.delete(f"{ROUTES}to-mine")).status_code == 200
    assert (await alice.delete(f"{EXTERNAL}/mine")).status_code == 200


# --- configured headers: no token may set a header the gateway owns ----------------------------

FORGED = [
    {"X-Auth-User-Name": "bob"},
    {"X_Auth_User_Name": "bob"},
    {"x-auth-email": "bob@example.com"},
    {"Host": "bob.example.com"},
    {"X-Forwarded-For": "10.0.0.1"},
    {"Transfer-Encoding": "chunked"},
]


@pytest.mark.parametrize("headers", FORGED)
async def test_a_proxy_to_bs_backend_with_forged_headers_is_refused(
    world: World, headers: dict[str, str]
) -> None:
    name = next(iter(headers))
    forged = {
        "hostname": "forger.example.com",
        "target_url": world.url("bob"),
        "enable_https": False,
        "custom_headers": {"X-Fine": "1", **headers},
    }
    for client in (world.alice, world.api):  # the admin too
        response = await client.post(TARGETS, json=forged)
        await refused_and_unchanged(
            world, response, 422, "forbidden_header", f"custom_headers.{name}"
        )
        assert name in response.json()["detail"]
    assert (await world.api.get(f"{TARGETS}forger.example.com")).status_code == 404
    assert await backend_of(world.public, "forger.example.com") is None


async def test_forged_headers_are_refused_on_update_and_by_a_prefix_change(world: World) -> None:
    alice_proxy = f"{TARGETS}alice.example.com"
    response = await world.alice.put(alice_proxy, json={"custom_headers": {"X-Auth-User": "bob"}})
    await refused_and_unchanged(
        world, response, 422, "forbidden_header", "custom_headers.X-Auth-User"
    )
    await created(await world.alice.put(alice_proxy, json={"custom_headers": {"X-User-Id": "7"}}))
    moved = await world.alice.post(f"{alice_proxy}/auth", json={"auth_header_prefix": "X-User-"})
    await refused_and_unchanged(world, moved, 422, "forbidden_header", "custom_headers.X-User-Id")
    stored = (await world.alice.get(alice_proxy)).json()
    assert (stored["auth_enabled"], stored["auth_header_prefix"]) == (False, "X-Auth-")
    echoed = (await world.public.get("/echo/x", headers={"Host": "alice.example.com"})).json()
    assert echoed["headers"]["x-user-id"] == "7"


# --- targets: never the gateway itself, never link-local --------------------------------------


def gateway_targets(gateway: Ready) -> list[str]:
    api_port = httpx.URL(gateway.api_url).port
    return [
        f"http://127.0.0.1:{api_port}",
        f"http://localhost:{api_port}",
        f"http://localhost.:{api_port}",
        f"http://0x7f000001:{api_port}",
        f"http://[::1]:{api_port}",
        f"http://0.0.0.0:{api_port}",
        f"http://127.0.0.1:{gateway.http_port}",
        f"https://127.0.0.1:{gateway.https_port}",
        f"http://127.0.0.1:{gateway.proxy_protocol_port}",
    ]


METADATA_TARGETS = [
    f"http://{METADATA}/latest/meta-data/",
    "http://2852039166/",  # 169.254.169.254 as one number, read so by the resolver
    "http://[::ffff:169.254.169.254]/",
    "http://[fe80::1]:8080/",
]


async def each_kind_of_target(world: World, url: str) -> list[tuple[httpx.Response, str]]:
    """A proxy, a route (url, and port when `url` is loopback) and a service aimed at `url`."""
    alice = world.alice
    attempts = [
        (
            await alice.post(TARGETS, json={"hostname": "aim.example.com", "target_url": url}),
            "target_url",
        ),
        (await alice.put(f"{TARGETS}alice.example.com", json={"target_url": url}), "target_url"),
        (await alice.post(ROUTES, json=route(target_value=url)), "target_value"),
        (await alice.post(EXTERNAL, json={"service_name": "aim", "target_url": url}), "target_url"),
    ]
    parts = httpx.URL(url)
    if parts.host == "127.0.0.1" and parts.port is not None:
        port_route = route(target_type="port", target_value=str(parts.port))
        attempts.append((await alice.post(ROUTES, json=port_route), "target_value"))
    return attempts


@pytest.mark.parametrize("which", range(9))
async def test_an_owner_cannot_target_the_gateway(world: World, which: int) -> None:
    url = gateway_targets(world.gateway)[which]
    for response, field in await each_kind_of_target(world, url):
        await refused_and_unchanged(world, response, 403, "target_not_allowed", field)
        assert "is the gateway" in response.json()["detail"]
    assert await backend_of(world.public, "aim.example.com") is None
    assert await backend_of(world.public, "alice.example.com") == "alice"


@pytest.mark.parametrize("url", METADATA_TARGETS)
async def test_an_owner_cannot_target_link_local_metadata(world: World, url: str) -> None:
    for response, field in await each_kind_of_target(world, url):
        await refused_and_unchanged(world, response, 403, "target_not_allowed", field)
        assert "which owner tokens may not target" in response.json()["detail"]
    assert await backend_of(world.public, "alice.example.com") == "alice"


async def test_the_admin_may_target_the_gateway_and_metadata(world: World) -> None:
    api_url = gateway_targets(world.gateway)[0]
    await proxy(world.api, "admin-api.example.com", api_url)
    await created(await world.api.post(ROUTES, json=route(target_value=f"http://{METADATA}/")))
    await settle(world)
    health = await world.public.get("/health", headers={"Host": "admin-api.example.com"})
    assert health.status_code == 200


async def test_the_deny_list_is_a_setting(
    nursery: trio.Nursery, storage: Storage, make_settings: Any
) -> None:
    settings = make_settings(owner_target_deny_networks="127.0.0.0/8")
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    async with httpx.AsyncClient(base_url=ready.api_url) as admin_client:
        admin_client.headers["Authorization"] = f"Bearer {ready.admin_token.secret}"
        async with owner(admin_client, ready, "carol") as carol:
            body = {"hostname": "c.example.com", "target_url": "http://127.0.0.1:3000"}
            refused = await carol.post(TARGETS, json=body)
            assert (refused.status_code, refused.json()["error"]) == (403, "target_not_allowed")
            assert "127.0.0.0/8" in refused.json()["detail"]
            wide = {"hostname": "m.example.com", "target_url": f"http://{METADATA}/"}
            assert (await carol.post(TARGETS, json=wide)).status_code == 201


# --- quotas -----------------------------------------------------------------------------------


async def test_quotas_bound_each_owner_and_two_creates_never_share_the_last_slot(
    nursery: trio.Nursery, storage: Storage, make_settings: Any
) -> None:
    settings = make_settings(token_max_proxies=3, token_max_routes=1, token_max_services=1)
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    headers = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with (
        httpx.AsyncClient(base_url=ready.api_url, headers=headers) as admin_client,
        owner(admin_client, ready, "dave") as dave,
    ):
        answers: list[httpx.Response] = []

        async def create_one(number: int) -> None:
            body = {"hostname": f"d{number}.example.com", "target_url": "http://127.0.0.1:3000"}
            answers.append(await dave.post(TARGETS, json=body))

        async with trio.open_nursery() as racing:
            for number in range(6):
                racing.start_soon(create_one, number)
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [201, 201, 201, 403, 403, 403]
        over = next(answer for answer in answers if answer.status_code == 403).json()
        assert (over["error"], over["field"]) == ("quota_exceeded", "TOKEN_MAX_PROXIES")
        assert "TOKEN_MAX_PROXIES=3" in over["detail"]
        assert len((await dave.get(TARGETS)).json()) == 3

        mine = (await dave.get(TARGETS)).json()[0]["hostname"]
        first = route(route_id="r1", proxy_hostnames=[mine], target_value="http://127.0.0.1:3000")
        assert (await dave.post(ROUTES, json=first)).status_code == 201
        second = {**first, "route_id": "r2", "path_pattern": "/other/"}
        refused = await dave.post(ROUTES, json=second)
        assert (refused.status_code, refused.json()["field"]) == (403, "TOKEN_MAX_ROUTES")
        service = {"service_name": "s1", "target_url": "http://127.0.0.1:3000"}
        assert (await dave.post(EXTERNAL, json=service)).status_code == 201
        refused = await dave.post(EXTERNAL, json={**service, "service_name": "s2"})
        assert (refused.status_code, refused.json()["field"]) == (403, "TOKEN_MAX_SERVICES")

        assert (await dave.delete(f"{ROUTES}r1")).status_code == 200
        assert (await dave.post(ROUTES, json=second)).status_code == 201

        for number in range(5):  # the admin is not bounded
            body = {"hostname": f"a{number}.example.com", "target_url": "http://127.0.0.1:3000"}
            assert (await admin_client.post(TARGETS, json=body)).status_code == 201
        assert await storage.redis.keys("owner:lock:*") == set()
