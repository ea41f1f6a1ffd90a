"""What an owner may configure, on the wire: no header the gateway owns (for any token), no
target that is the gateway itself or a link-local address, and no more records than its quotas."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from oauthproxy.serve import Ready, serve
from oauthproxy.storage import Storage
from tests.tenants import (
    EXTERNAL,
    METADATA,
    RESOURCES,
    ROUTES,
    TARGETS,
    World,
    backend_of,
    created,
    owner,
    proxy,
    refused_and_unchanged,
    route,
    settle,
    world,
)

__all__ = ["world"]


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
        f"http://127.0.0.1:{httpx.URL(gateway.redis).port}",  # the gateway's own Redis
    ]


METADATA_TARGETS = [
    f"http://{METADATA}/latest/meta-data/",
    "http://2852039166/",  # 169.254.169.254 as one number, read so by the resolver
    "http://[::ffff:169.254.169.254]/",
    "http://[fe80::1]:8080/",
    "http://[fd00:ec2::254]/latest/meta-data/",  # AWS's IPv6 metadata service (not link-local)
    "http://100.100.100.200/latest/meta-data/",  # Alibaba Cloud's (not link-local either)
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


@pytest.mark.parametrize("which", range(10))
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


async def test_an_owner_attaches_services_only_to_the_listed_docker_networks(
    nursery: trio.Nursery, storage: Storage, make_settings: Any, tmp_path: Any
) -> None:
    """Any network but `host` was an owner's to name, the compose project's too, where the
    gateway's Redis and admin API listen: a container there reaches both. Owners now name only
    OWNER_DOCKER_NETWORKS; refused before the engine is asked (none answers here)."""
    engine = f"unix://{tmp_path}/no-engine.sock"
    settings = make_settings(docker_host=engine, owner_docker_networks="apps")
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    async with httpx.AsyncClient(base_url=ready.api_url) as admin_client:
        admin_client.headers["Authorization"] = f"Bearer {ready.admin_token.secret}"
        async with owner(admin_client, ready, "carol") as carol:
            body = {"service_name": "svc", "image": "busybox", "start": False}
            compose = await carol.post(
                "/api/v1/services/", json={**body, "networks": ["oauthproxy_default"]}
            )
            assert (compose.status_code, compose.json()["field"]) == (403, "networks")
            assert "OWNER_DOCKER_NETWORKS" in compose.json()["detail"]
            listed = await carol.post("/api/v1/services/", json={**body, "networks": ["apps"]})
            assert listed.status_code == 503, listed.text  # past the rule: no engine here


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


# --- free-form JSON an owner stores: bounded in depth, so every record reads back -------------


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("field", ["resource_custom_metadata", "resource_server_info"])
@pytest.mark.parametrize("depth", [150, 250])
async def test_metadata_nested_too_deeply_is_refused_and_every_proxy_still_reads(
    world: World, field: str, depth: int
) -> None:
    """JSON nested 150 levels passed validation and was stored, but pydantic reads JSON back
    only 200 levels deep (with the record's own levels): the stored proxy could not be read,
    and with it no list of proxies, for the admin, other owners or the data plane."""
    response = await world.alice.post(
        f"{TARGETS}alice.example.com/mcp", json={field: _nested(depth)}
    )
    await refused_and_unchanged(world, response, 422, "validation_error", field)
    assert (await world.api.get(TARGETS)).status_code == 200
    fine = await world.alice.post(f"{TARGETS}alice.example.com/mcp", json={field: _nested(30)})
    assert fine.status_code == 200, fine.text
    assert (await world.api.get(TARGETS)).status_code == 200


@pytest.mark.parametrize(
    "value",
    ['{"k": "\\udfff"}', '{"\\ud800": 1}', '{"k": NaN}', '{"k": [Infinity]}'],
    ids=["lone-surrogate", "surrogate-key", "nan", "infinity"],
)
async def test_metadata_that_is_not_json_text_is_refused(world: World, value: str) -> None:
    """Python's JSON parser takes lone surrogates and NaN/Infinity; the first could not be
    stored (a 500), the second came back as null."""
    body = '{"resource_custom_metadata": ' + value + "}"
    response = await world.alice.post(
        f"{TARGETS}alice.example.com/mcp",
        content=body,
        headers={"content-type": "application/json"},
    )
    await refused_and_unchanged(
        world, response, 422, "validation_error", "resource_custom_metadata"
    )


async def test_an_owner_cannot_accept_another_owners_tokens(world: World) -> None:
    """`auth_allowed_audiences` was free text: Alice listed Bob's origin, a token Bob's users
    got for Bob's proxy then passed Alice's, and its Authorization header reached Alice's
    backend, which could use it at Bob's. An extra audience may not name another owner's proxy
    or the gateway's own hostnames; her own resources and other URIs are hers to name."""
    path = f"{TARGETS}alice.example.com/auth"
    for audience in (
        "http://bob.example.com",
        "https://bob.example.com/mcp",
        "bob-secret.example.com",
    ):
        body = {"auth_required_users": ["*"], "auth_allowed_audiences": [audience]}
        refused = await world.alice.post(path, json=body)
        await refused_and_unchanged(world, refused, 403, "forbidden", "auth_allowed_audiences")
    issuer = {"auth_allowed_audiences": ["https://auth.localhost"]}  # OAUTH_ISSUER's host
    refused = await world.alice.post(path, json=issuer)
    assert (refused.status_code, refused.json()["field"]) == (403, "auth_allowed_audiences")
    mine = ["https://alice.example.com/v2", "urn:alice:tools"]
    accepted = await world.alice.post(path, json={"auth_allowed_audiences": mine})
    assert accepted.status_code == 200, accepted.text


async def _mint(world: World, resource: str) -> str:
    """A token such as a user of `resource` gets at a login (minted by the admin)."""
    body = {"resource": resource, "scope": "mcp:read", "username": "bobs-user", "lifetime": 300}
    minted = await created(await world.api.post("/api/v1/oauth/test-tokens", json=body))
    token: str = minted["access_token"]
    return token


async def _through_alice(world: World, token: str) -> httpx.Response:
    return await world.public.get(
        "/echo/x", headers={"Host": "alice.example.com", "Authorization": f"Bearer {token}"}
    )


async def test_an_audience_named_before_another_owner_claims_it_stops_passing(
    world: World,
) -> None:
    """Alice listed `http://carol.example.com` while no proxy had that name (accepted); Bob
    then made his protected proxy carol.example.com. Tokens Bob's users got for it passed
    Alice's proxy, their Authorization header reaching her backend: the rule was checked when
    Alice wrote her list, never when the name was claimed. Her instance now keeps only the
    audiences that are not another owner's, as the proxies are now."""
    path = f"{TARGETS}alice.example.com/auth"
    body = {"auth_required_users": ["*"], "auth_allowed_audiences": ["http://carol.example.com"]}
    await created(await world.alice.post(path, json=body))
    await settle(world)
    token = await _mint(world, "http://carol.example.com")
    assert (await _through_alice(world, token)).status_code == 200  # nobody's yet: hers to name
    await proxy(world.bob, "carol.example.com", world.url("bob"))
    await created(
        await world.bob.post(
            f"{TARGETS}carol.example.com/auth", json={"auth_required_users": ["*"]}
        )
    )
    await settle(world)
    at_bob = await world.public.get(
        "/echo/x", headers={"Host": "carol.example.com", "Authorization": f"Bearer {token}"}
    )
    assert at_bob.status_code == 200, at_bob.text
    at_alice = await _through_alice(world, token)
    assert at_alice.status_code == 401, at_alice.text
    # and through ForwardAuth's /verify, which reads the proxies when asked
    async with httpx.AsyncClient(base_url=world.gateway.api_url) as anonymous:
        verified = await anonymous.get(
            "/verify",
            headers={"X-Forwarded-Host": "alice.example.com", "X-Forwarded-Proto": "http",
                     "Authorization": f"Bearer {token}"},
        )  # fmt: skip
    assert verified.status_code == 401, verified.text


async def test_an_owner_cannot_accept_tokens_for_the_admins_registered_resources(
    world: World,
) -> None:
    """The protected-resource registry is the admin's: an owner listing one of its URIs (or a
    URI under it) as an extra audience would take the tokens users get for the admin's MCP
    server, their Authorization header reaching the owner's backend."""
    uri = "https://mcp.admin-tools.example/mcp"
    await created(await world.api.post(RESOURCES, json={"uri": uri, "name": "admin tools"}))
    path = f"{TARGETS}alice.example.com/auth"
    for audience in (uri, uri + "/tools"):
        body = {"auth_required_users": ["*"], "auth_allowed_audiences": [audience]}
        refused = await world.alice.post(path, json=body)
        await refused_and_unchanged(world, refused, 403, "forbidden", "auth_allowed_audiences")


async def test_an_audience_named_before_the_admin_registers_the_resource_stops_passing(
    world: World,
) -> None:
    """The other order: Alice listed the URI while it was nobody's (accepted), and the admin
    registered an MCP server there later. Tokens users got for the admin's server passed her
    proxy, their Authorization header reaching her backend, which could replay them there.
    Registering the resource now takes it (and URIs under it) out of owners' lists."""
    uri = "https://mcp.admin-tools.example/mcp"
    path = f"{TARGETS}alice.example.com/auth"
    kept = "http://alice-other.example.com"
    body = {
        "auth_required_users": ["*"],
        "auth_allowed_audiences": [uri, uri + "/tools", kept],
    }
    await created(await world.alice.post(path, json=body))
    await settle(world)
    token = await _mint(world, uri)
    assert (await _through_alice(world, token)).status_code == 200  # nobody's yet: hers to name
    await created(await world.api.post(RESOURCES, json={"uri": uri, "name": "admin tools"}))
    await settle(world)
    assert (await _through_alice(world, token)).status_code == 401
    listed = (await world.alice.get(path)).json()["auth_allowed_audiences"]
    assert listed == [kept]
