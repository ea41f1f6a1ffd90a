"""The attacks of issue 9 through routes and hostnames, on the wire: a global route hijacking
every hostname, a route on B's hostname, a hostname route past B's auth, routes that outlive what
they name, and the gateway's own hostnames. Each failed before the tenant model (the request was
accepted); each is now refused and B's traffic is unchanged."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

from tests.tenants import (
    EXTERNAL,
    ROUTES,
    TARGETS,
    World,
    backend_of,
    bob_traffic_is_unchanged,
    created,
    proxy,
    refused_and_unchanged,
    route,
    served_by,
    settle,
    world,
)

__all__ = ["world"]


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
    ("change", "error", "field"),
    [
        ({"scope": "global"}, "forbidden", "scope"),
        (
            {"proxy_hostnames": ["alice.example.com", "bob.example.com"]},
            "forbidden",
            "proxy_hostnames",
        ),
        (
            {"target_type": "hostname", "target_value": "bob-secret.example.com"},
            "forbidden",
            "target_value",
        ),
        ({"target_type": "service", "target_value": "bob-svc"}, "forbidden", "target_value"),
        ({"target_value": "http://169.254.169.254/"}, "target_not_allowed", "target_value"),
    ],
)
async def test_updating_a_route_is_checked_like_creating_one(
    world: World, change: dict[str, Any], error: str, field: str
) -> None:
    mine = await created(
        await world.alice.post(ROUTES, json=route(route_id="mine", target_value=world.url("alice")))
    )
    response = await world.alice.put(f"{ROUTES}mine", json=change)
    await refused_and_unchanged(world, response, 403, error, field)
    assert (await world.alice.get(f"{ROUTES}mine")).json() == mine


async def test_updating_a_route_onto_the_gateways_port_is_refused(world: World) -> None:
    mine = await created(
        await world.alice.post(ROUTES, json=route(route_id="mine", target_value=world.url("alice")))
    )
    loop = {"target_value": f"http://localhost.:{world.gateway.http_port}/"}
    response = await world.alice.put(f"{ROUTES}mine", json=loop)
    await refused_and_unchanged(world, response, 403, "target_not_allowed", "target_value")
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


@pytest.mark.parametrize(
    ("hostname", "status", "error"),
    [
        ("localhost", 409, "hostname_reserved"),  # API_HOSTNAMES: refused to every token
        ("auth.localhost", 403, "forbidden"),  # the issuer's: the admin's alone
    ],
)
async def test_an_owner_cannot_claim_the_gateways_own_hostnames(
    world: World, hostname: str, status: int, error: str
) -> None:
    """The admin API's hostname and the OAuth issuer's carry every owner's tokens."""
    claim = {"hostname": hostname, "target_url": world.url("attacker"), "enable_https": False}
    response = await world.alice.post(TARGETS, json=claim)
    await refused_and_unchanged(world, response, status, error, "hostname")
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


async def test_a_path_and_priority_of_another_owner_are_not_refused(world: World) -> None:
    """B holds `/echo/bob-route/` at priority 50 on his hostname. The same pair on A's own
    hostname concerns A's traffic only: a 409 there told A what B routes, and let whoever came
    first take a pair from everyone else."""
    mine = route(path_pattern="/echo/bob-route/", target_value=world.url("alice"))
    await created(await world.alice.post(ROUTES, json=mine))
    await settle(world)
    assert await backend_of(world.public, "alice.example.com", "/echo/bob-route/x") == "alice"
    await bob_traffic_is_unchanged(world)
    assert await backend_of(world.public, "bob.example.com", "/echo/bob-route/x") == "bob-side"


async def test_an_owner_cannot_squat_a_path_and_priority_for_everyone(world: World) -> None:
    """A takes `/echo/shop/` at the default priority first; B's own `/echo/shop/` at that
    priority on his own proxy is still his to create. Within one owner the pair stays unique."""
    squat = route(path_pattern="/echo/shop/", target_value=world.url("alice"))
    await created(await world.alice.post(ROUTES, json=squat))
    bobs = route(
        path_pattern="/echo/shop/",
        target_value=world.url("bob-side"),
        proxy_hostnames=["bob.example.com"],
    )
    await created(await world.bob.post(ROUTES, json=bobs))
    again = await world.alice.post(ROUTES, json=squat)
    assert (again.status_code, again.json()["field"]) == (409, "path_pattern")
    await settle(world)
    assert await backend_of(world.public, "bob.example.com", "/echo/shop/x") == "bob-side"
    assert await backend_of(world.public, "alice.example.com", "/echo/shop/x") == "alice"


async def test_two_updates_at_once_cannot_aim_a_port_route_at_the_admin_api(world: World) -> None:
    """A route update's target was checked on the route as read before the owner's lock, and
    the changes written onto the route as stored once it was taken. Alice names an external
    service after the admin API's port (`9000` is a valid name), keeps a `port` route on her
    backend, and sends `{"target_type": "port"}` and `{"target_type": "service",
    "target_value": "9000"}` together: each passed its check, and together they made the
    route `port` 9000, the admin API. The check and the write are on the same route now."""
    api_port = str(urlsplit(world.gateway.api_url).port)
    own_port = str(world.ports["alice"])
    service = {"service_name": api_port, "target_url": world.url("alice")}
    await created(await world.alice.post(EXTERNAL, json=service))
    race = route(route_id="race", path_pattern="/health", target_type="port", target_value=own_port)
    await created(await world.alice.post(ROUTES, json=race))
    path = f"{ROUTES}race"
    for _ in range(20):
        reset = await world.alice.put(path, json={"target_type": "port", "target_value": own_port})
        assert reset.status_code == 200, reset.text
        async with trio.open_nursery() as both:
            for body in (
                {"target_type": "port"},
                {"target_type": "service", "target_value": api_port},
            ):
                both.start_soon(functools.partial(world.alice.put, path, json=body))
        stored = (await world.alice.get(path)).json()
        assert (stored["target_type"], stored["target_value"]) != ("port", api_port), stored


HEAVY = "|".join(f".*{'ab'[i % 2]}[ab]{{{180 + i}}}c" for i in range(5))
"""969 RE2 instructions: within one pattern's bound, but its DFA needs exponentially many states,
so RE2 falls back to its slower matcher: ~6 ns per instruction and byte of path."""


async def test_an_owners_regex_routes_are_bounded_in_work(world: World) -> None:
    """Alternations of `.*a[ab]{180}c` (accepted by RE2, a few hundred characters) took ~0.4 s
    per route on a 60 KB path, on the event loop every tenant shares, and an owner may hold 100
    routes. A pattern compiles to at most 1,000 instructions, an owner's regex routes to 2,000
    together, and a regex is matched only against paths of at most 1 KiB."""
    too_big = HEAVY + "|" + HEAVY.replace("c", "d")
    refused = await world.alice.post(ROUTES, json=route(is_regex=True, path_pattern=too_big))
    assert (refused.status_code, refused.json()["field"]) == (422, "path_pattern")
    assert "too complex" in refused.json()["detail"]
    heavy = route(
        route_id="heavy", is_regex=True, path_pattern=HEAVY, target_value=world.url("attacker")
    )
    await created(await world.alice.post(ROUTES, json=heavy))
    second = route(route_id="second", is_regex=True, path_pattern="/r/" + HEAVY[2:])
    await created(await world.alice.post(ROUTES, json=second))  # 969 + 963 instructions
    third = route(route_id="third", is_regex=True, path_pattern="^/z/[ab]{100}")
    over = await world.alice.post(ROUTES, json=third)  # + 104: over the owner's 2,000
    assert over.status_code == 422, over.text
    assert over.json()["field"] == "path_pattern", over.text
    assert "at most 2000" in over.json()["detail"]
    # the owner's budget is its own: Bob's regex routes are not counted against it, nor Alice's his
    bobs = route(is_regex=True, path_pattern=HEAVY, proxy_hostnames=["bob.example.com"])
    await created(await world.bob.post(ROUTES, json=bobs))
    # the heavy route still serves its paths, up to 1 KiB of them
    marker = route(
        route_id="marker",
        is_regex=True,
        path_pattern="^/echo/re/",
        target_value=world.url("bob-side"),
    )
    await created(await world.alice.post(ROUTES, json=marker))
    await settle(world)
    short, long = "/echo/re/" + "a" * 100, "/echo/re/" + "a" * 1100
    assert await backend_of(world.public, "alice.example.com", short) == "bob-side"
    assert await backend_of(world.public, "alice.example.com", long) == "alice"  # no regex route
