"""The tenant matrix on the wire: owner A against each of owner B's records, for every operation,
and an owner token against every admin-only operation; each refused with its status and JSON
body, and B's records and traffic through the public port unchanged (see `tests.tenants`)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.tenants import (
    EXTERNAL,
    RESOURCES,
    ROUTES,
    TARGETS,
    World,
    created,
    missing,
    refused_and_unchanged,
    route,
    world,
)

__all__ = ["world"]


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
