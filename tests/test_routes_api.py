"""The route endpoints over real HTTP against a real gateway and a real Redis."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.errors import Conflict
from oauthproxy.models.events import ALL_HOSTS, EventType
from oauthproxy.models.routes import Route
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, keys
from oauthproxy.storage.events import parse_event

ROUTES = "/api/v1/routes/"


def body(**fields: Any) -> dict[str, Any]:
    """A valid create request: route `api`, `/api/` at priority 90 to port 3000."""
    values = {
        "route_id": "api",
        "path_pattern": "/api/",
        "target_type": "port",
        "target_value": "3000",
        "priority": 90,
    }
    return {**values, **fields}


async def create(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await api.post(ROUTES, json=body(**fields))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def index_keys(route_id: str, path: str, priority: int, owner: str | None = None) -> list[str]:
    return [
        keys.route(route_id),
        keys.route_unique(path, priority, owner),
        keys.route_priority(priority, route_id),
    ]


async def route_keys(storage: Storage) -> set[str]:
    return {key async for key in storage.redis.scan_iter(match="route:*")}


async def route_events(storage: Storage) -> list[dict[str, Any]]:
    """The data of every `routes_changed` event, oldest first; each is for every host."""
    entries = await storage.redis.xrange(keys.EVENTS_WORKFLOW)
    events = [parse_event(entry.field_values) for entry in entries]
    changed = [event for event in events if event.event_type is EventType.ROUTES_CHANGED]
    assert all(event.hostname == ALL_HOSTS for event in changed)
    return [event.data for event in changed]


@asynccontextmanager
async def token_client(
    api: httpx.AsyncClient, gateway: Ready, name: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated with a new, non-admin token called `name`."""
    created = await api.post("/api/v1/tokens/generate", json={"name": name})
    headers = {"Authorization": f"Bearer {created.json()['token']}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as client:
        yield client


async def test_create_writes_the_route_its_indexes_and_an_event(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    created = await create(api, methods=["get", "post"], description="the API")
    assert created["methods"] == ["GET", "POST"]
    assert created["created_by"] == "admin"
    admin = await storage.tokens.get("admin")
    assert admin is not None
    assert created["owner_token_hash"] == admin.hash
    assert await route_keys(storage) == set(index_keys("api", "/api/", 90, admin.hash))
    assert await storage.redis.get(keys.route_unique("/api/", 90, admin.hash)) == "api"
    assert (await api.get(f"{ROUTES}api")).json() == created
    assert await route_events(storage) == [{"route_id": "api", "change": "created"}]


async def test_update_moves_the_indexes_and_announces_itself(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    owner = (await create(api))["owner_token_hash"]
    moved = await api.put(f"{ROUTES}api", json={"path_pattern": "/v2/", "priority": 10})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["path_pattern"], moved.json()["priority"]) == ("/v2/", 10)
    assert await route_keys(storage) == set(index_keys("api", "/v2/", 10, owner))

    described = await api.put(f"{ROUTES}api", json={"description": "moved", "methods": None})
    assert described.json()["description"] == "moved"
    assert await route_keys(storage) == set(index_keys("api", "/v2/", 10, owner))
    assert (await api.get(f"{ROUTES}api")).json() == described.json()
    assert [event["change"] for event in await route_events(storage)] == [
        "created",
        "updated",
        "updated",
    ]


async def test_delete_removes_the_route_and_its_indexes(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    await create(api)
    other = await create(api, route_id="other", path_pattern="/other/")
    deleted = await api.delete(f"{ROUTES}api")
    assert deleted.status_code == 200
    assert deleted.json()["route_id"] == "api"
    owner = other["owner_token_hash"]
    assert await route_keys(storage) == set(index_keys("other", "/other/", 90, owner))
    assert (await route_events(storage))[-1] == {"route_id": "api", "change": "deleted"}

    missing = await api.get(f"{ROUTES}api")
    assert missing.status_code == 404
    assert missing.json()["field"] == "route"
    assert (await api.delete(f"{ROUTES}api")).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "request_body", "field"),
    [
        ("POST", ROUTES, body(), "route_id"),
        ("POST", ROUTES, body(route_id="api2"), "path_pattern"),
        ("PUT", f"{ROUTES}third", {"path_pattern": "/api/"}, "path_pattern"),
        ("PUT", f"{ROUTES}lower", {"priority": 90}, "priority"),
    ],
)
async def test_conflicts_name_the_field_and_change_nothing(
    api: httpx.AsyncClient,
    storage: Storage,
    method: str,
    path: str,
    request_body: dict[str, Any],
    field: str,
) -> None:
    await create(api)
    await create(api, route_id="lower", priority=10)
    await create(api, route_id="third", path_pattern="/third/")
    before = {key: await storage.redis.get(key) for key in await route_keys(storage)}

    response = await api.request(method, path, json=request_body)

    assert response.status_code == 409, response.text
    assert response.json()["field"] == field
    after = {key: await storage.redis.get(key) for key in await route_keys(storage)}
    assert after == before
    assert len(await route_events(storage)) == 3


HEAVY_REGEX = ".*" + "[^z].{1000}" * 8 + "z"
"""Linear in the path, but 64,077 instructions: 3.6 s per 60 KB path on the event loop."""


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"target_value": "0"}, "target_value", "1 to 65535"),
        ({"target_value": "http"}, "target_value", "1 to 65535"),
        ({"target_type": "url", "target_value": "ftp://x"}, "target_value", "http(s) URL"),
        ({"target_type": "hostname", "target_value": "no way"}, "target_value", "DNS hostname"),
        ({"target_type": "service", "target_value": "-x"}, "target_value", "service name"),
        ({"target_type": "socket"}, "target_type", "Input should be"),
        ({"is_regex": True, "path_pattern": "^/api/(v1"}, "path_pattern", "regular expression"),
        ({"is_regex": True, "path_pattern": "^/api/(?!admin)"}, "path_pattern", "RE2"),
        ({"is_regex": True, "path_pattern": r"^/(a)\1"}, "path_pattern", "RE2"),
        ({"is_regex": True, "path_pattern": HEAVY_REGEX}, "path_pattern", "too complex"),
        ({"path_pattern": "api/"}, "path_pattern", "starts with /"),
        ({"methods": ["GET", "FETCH"]}, "methods.1", "unknown HTTP method"),
        ({"scope": "proxy"}, "proxy_hostnames", "at least one proxy hostname"),
        ({"scope": "proxy", "proxy_hostnames": ["a b"]}, "proxy_hostnames.0", "DNS hostname"),
        ({"priority": 1001}, "priority", "less than or equal to 1000"),
        ({"route_id": "has space"}, "route_id", "expected a name of letters"),
        ({"owner_token_hash": "sha256:x"}, "owner_token_hash", "unknown field"),
    ],
)
async def test_invalid_routes_name_the_field(
    api: httpx.AsyncClient, storage: Storage, fields: dict[str, Any], field: str, problem: str
) -> None:
    response = await api.post(ROUTES, json=body(**fields))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert problem in response.json()["errors"][0]["problem"]
    assert await route_keys(storage) == set()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"is_regex": True}, "path_pattern"),  # the stored prefix "/a(" is no regex
        ({"target_type": "url"}, "target_value"),  # "3000" is no URL
        ({"priority": None}, "priority"),
        ({"route_id": "renamed"}, "route_id"),
    ],
)
async def test_an_update_is_checked_as_a_whole_route(
    api: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    created = await create(api, path_pattern="/a(")
    response = await api.put(f"{ROUTES}api", json=change)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert (await api.get(f"{ROUTES}api")).json() == created


async def test_a_missing_id_is_made_from_the_path(api: httpx.AsyncClient) -> None:
    created = await create(api, route_id=None, path_pattern="/api/v1/")
    assert re.fullmatch(r"api-v1-[0-9a-f]{6}", created["route_id"])
    assert (await api.get(f"{ROUTES}{created['route_id']}")).status_code == 200


async def test_only_the_owner_or_the_admin_sees_and_changes_a_route(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    async with (
        token_client(api, gateway, "alice") as alice,
        token_client(api, gateway, "bob") as bob,
    ):
        await alice.post(
            "/api/v1/proxy/targets/",
            json={"hostname": "alice.example.com", "target_url": "http://127.0.0.1:3000"},
        )
        owned = await create(alice, scope="proxy", proxy_hostnames=["alice.example.com"])
        assert owned["created_by"] == "alice"
        assert (await alice.get(f"{ROUTES}api")).json() == owned
        assert (await api.get(f"{ROUTES}api")).json() == owned
        for hidden in (
            await bob.get(f"{ROUTES}api"),
            await bob.put(f"{ROUTES}api", json={"priority": 1}),
            await bob.delete(f"{ROUTES}api"),
        ):
            assert hidden.status_code == 404
            assert hidden.json() == {
                "error": "not_found",
                "detail": "route 'api' not found",
                "field": "route",
            }
        assert (await bob.get(ROUTES)).json() == []
        assert (await alice.put(f"{ROUTES}api", json={"priority": 1})).status_code == 200
        assert (await api.delete(f"{ROUTES}api")).status_code == 200


async def test_list_in_priority_order_and_by_scope(api: httpx.AsyncClient) -> None:
    await create(api, route_id="low", path_pattern="/low/", priority=5)
    await create(api, route_id="high", path_pattern="/high/", priority=95)
    await create(
        api,
        route_id="mine",
        path_pattern="/mine/",
        scope="proxy",
        proxy_hostnames=["a.example.com"],
    )
    listed = await api.get(ROUTES)
    assert [route["route_id"] for route in listed.json()] == ["high", "mine", "low"]
    by_scope = {
        scope: [route["route_id"] for route in (await api.get(f"{ROUTES}?scope={scope}")).json()]
        for scope in ("global", "proxy")
    }
    assert by_scope == {"global": ["high", "low"], "proxy": ["mine"]}
    wrong = await api.get(f"{ROUTES}?scope=everywhere")
    assert (wrong.status_code, wrong.json()["field"]) == (422, "scope")


async def test_formatted_is_a_plain_text_table(api: httpx.AsyncClient) -> None:
    await create(api, methods=["GET"], description="the API")
    await create(
        api,
        route_id="numbered",
        path_pattern=r"^/items/\d+$",
        is_regex=True,
        target_type="url",
        target_value="http://backend:8080",
        scope="proxy",
        proxy_hostnames=["a.example.com", "b.example.com"],
    )
    response = await api.get(f"{ROUTES}formatted")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert lines[0].split() == [
        "ID",
        "PATH",
        "TARGET",
        "PRIORITY",
        "METHODS",
        "SCOPE",
        "ENABLED",
        "DESCRIPTION",
    ]
    assert lines[1].split() == [
        "api",
        "/api/",
        "port:3000",
        "90",
        "GET",
        "global",
        "yes",
        "the",
        "API",
    ]
    assert lines[2].split() == [
        "numbered",
        r"^/items/\d+$",
        "(regex)",
        "url:http://backend:8080",
        "90",
        "*",
        "a.example.com,b.example.com",
        "yes",
    ]
    assert lines[-1] == "2 routes"


@pytest.mark.parametrize(
    "route_id",
    ["nobody", "priority:90:api", "unique:", ".hidden", "x" * 65],
)
async def test_unknown_or_impossible_ids_are_404(api: httpx.AsyncClient, route_id: str) -> None:
    await create(api)
    for response in (
        await api.get(f"{ROUTES}{route_id}"),
        await api.put(f"{ROUTES}{route_id}", json={"priority": 1}),
        await api.delete(f"{ROUTES}{route_id}"),
    ):
        assert response.status_code == 404, response.text
        assert response.json() == {
            "error": "not_found",
            "detail": f"route {route_id!r} not found",
            "field": "route",
        }


async def test_every_endpoint_needs_a_token(anonymous: httpx.AsyncClient) -> None:
    for response in (
        await anonymous.get(ROUTES),
        await anonymous.get(f"{ROUTES}formatted"),
        await anonymous.post(ROUTES, json=body()),
        await anonymous.get(f"{ROUTES}api"),
        await anonymous.put(f"{ROUTES}api", json={"priority": 1}),
        await anonymous.delete(f"{ROUTES}api"),
    ):
        assert response.status_code == 401
        assert response.json()["field"] == "Authorization"


async def test_deleting_the_owner_token_deletes_its_routes_and_announces_it(
    api: httpx.AsyncClient, gateway: Ready, storage: Storage
) -> None:
    async with token_client(api, gateway, "carol") as carol:
        await carol.post(
            "/api/v1/proxy/targets/",
            json={"hostname": "carol.example.com", "target_url": "http://127.0.0.1:3000"},
        )
        await create(carol, scope="proxy", proxy_hostnames=["carol.example.com"])
    assert (await api.delete("/api/v1/tokens/carol")).status_code == 200
    assert await route_keys(storage) == set()
    assert await route_events(storage) == [
        {"route_id": "api", "change": "created"},
        {"route_id": "api", "change": "deleted"},
    ]


async def test_openapi_document_lists_the_route_endpoints(anonymous: httpx.AsyncClient) -> None:
    paths = (await anonymous.get("/api/v1/openapi.json")).json()["paths"]
    assert set(paths[ROUTES]) == {"get", "post"}
    assert set(paths[f"{ROUTES}{{route_id}}"]) == {"get", "put", "delete"}
    assert "parameters" in str(paths[ROUTES]["get"])  # the scope query
    assert f"{ROUTES}formatted" in paths


async def test_two_routes_racing_for_one_path_leave_one_winner(storage: Storage) -> None:
    for route_id in ("a", "b"):
        await storage.routes.create(
            Route(
                route_id=route_id,
                path_pattern=f"/{route_id}/",
                target_type="port",
                target_value="1",
            )
        )
    refused: list[str] = []

    async def move(route_id: str) -> None:
        try:
            await storage.routes.modify(
                route_id, lambda route: route.model_copy(update={"path_pattern": "/shared/"})
            )
        except Conflict as conflict:
            refused.append(f"{route_id}:{conflict.field}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(move, "a")
        nursery.start_soon(move, "b")

    assert len(refused) == 1
    loser = refused[0].split(":")[0]
    winner = "b" if loser == "a" else "a"
    assert refused == [f"{loser}:path_pattern"]
    assert await storage.redis.get(keys.route_unique("/shared/", 50)) == winner
    assert await route_keys(storage) == {
        *index_keys(winner, "/shared/", 50),
        *index_keys(loser, f"/{loser}/", 50),
    }


@pytest.mark.parametrize("field", ["methods", "proxy_hostnames"])
async def test_an_owner_names_at_most_100_methods_or_proxies_for_a_route(
    api: httpx.AsyncClient, gateway: Ready, field: str
) -> None:
    """A route's methods and proxy hostnames were unbounded lists (up to the 1 MiB body); at
    most MAX_ENTRIES (100) now, on create and on update (422 naming the field)."""
    entry = "GET" if field == "methods" else "alice.example.com"
    async with token_client(api, gateway, "alice") as alice:
        await alice.post(
            "/api/v1/proxy/targets/",
            json={"hostname": "alice.example.com", "target_url": "http://127.0.0.1:3000"},
        )
        scoped = {"scope": "proxy", "proxy_hostnames": ["alice.example.com"]}
        over = await alice.post(ROUTES, json=body(**{**scoped, field: [entry] * 101}))
        assert over.status_code == 422, over.text
        assert over.json()["field"] == field
        await create(alice, **{**scoped, field: [entry] * 100})
        over = await alice.put(f"{ROUTES}api", json={field: [entry] * 101})
        assert over.status_code == 422, over.text
        assert over.json()["field"] == field
        assert (await alice.put(f"{ROUTES}api", json={field: [entry] * 100})).status_code == 200


async def test_a_gateway_moves_owned_pairs_from_the_shared_key_when_it_starts(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    """Gateways before owner-scoped pairs indexed every route under `route:unique:{path}:{prio}`.
    Left there, an owned route's pair would still block every other owner, and deleting the
    route would leave the key behind; a starting gateway moves it to the owner's key."""
    owner = "sha256:" + "ef" * 32
    owned = Route(
        route_id="old", path_pattern="/old/", target_type="port", target_value="1",
        owner_token_hash=owner,
    )  # fmt: skip
    unowned = Route(route_id="bare", path_pattern="/bare/", target_type="port", target_value="1")
    for stored in (owned, unowned):
        await storage.routes.create(stored)
    await storage.redis.rename(
        keys.route_unique("/old/", 50, owner), keys.route_unique("/old/", 50)
    )
    await storage.redis.set(keys.route_unique("/stray/", 50), "old")  # not its pair: left alone

    await nursery.start(
        lambda task_status: serve(make_settings(), handle_signals=False, task_status=task_status)
    )

    assert await storage.redis.get(keys.route_unique("/old/", 50, owner)) == "old"
    assert await storage.redis.exists([keys.route_unique("/old/", 50)]) == 0
    assert await storage.redis.get(keys.route_unique("/bare/", 50)) == "bare"
    assert await storage.redis.get(keys.route_unique("/stray/", 50)) == "old"
    assert await storage.routes.move_owned_pairs() == 0  # again: nothing left to move
    await storage.routes.delete("old")
    assert not [key async for key in storage.redis.scan_iter(match="route:unique:/old/*")]
