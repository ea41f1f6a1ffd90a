"""The service endpoints over real HTTP against a real gateway and a real Redis: the three keys of
an external service, its `services_changed` events, the unified listing with the internal API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from oauthproxy.models.services import DockerService
from oauthproxy.serve import Ready
from oauthproxy.storage import Storage, keys
from tests.test_proxies_api import (
    as_new_token,
    assert_error,
    assert_event,
    events,
    last_event,
    put_ok,
)

SERVICES = "/api/v1/services/"
EXTERNAL = f"{SERVICES}external"
NAME = "api-gateway"


async def register(api: httpx.AsyncClient, name: str = NAME, **fields: Any) -> Any:
    body = {"service_name": name, "target_url": "https://gateway.example.com", **fields}
    response = await api.post(EXTERNAL, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def keys_of(storage: Storage, name: str = NAME) -> tuple[Any, str | None, bool]:
    """What Redis holds for an external service: its record, its URL, its set membership."""
    record = await storage.redis.get(keys.service_external(name))
    url = await storage.redis.get(keys.service_url(name))
    member = await storage.redis.sismember(keys.SERVICES_EXTERNAL, name)
    return (None if record is None else json.loads(record)), url, member


@pytest.fixture
async def bob(api: httpx.AsyncClient, gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    async with as_new_token(api, gateway, "bob") as client:
        yield client


async def test_register_list_show_update_unregister(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    created = await register(api, description="API Gateway service")
    assert created["service_type"] == "external"
    assert created["created_by"] == "admin"
    assert (created["description"], created["routing_enabled"]) == ("API Gateway service", True)
    assert await keys_of(storage) == (created, "https://gateway.example.com/", True)
    assert_event(await last_event(storage), "services_changed", "*", service_name=NAME)

    assert (await api.get(EXTERNAL)).json() == [created]
    assert (await api.get(f"{EXTERNAL}/{NAME}")).json() == created

    changes = {"target_url": "http://10.0.0.5:8080/v2", "routing_enabled": False}
    updated = await put_ok(api, f"{EXTERNAL}/{NAME}", changes)
    assert updated == {**created, **changes}
    assert await keys_of(storage) == (updated, "http://10.0.0.5:8080/v2", True)
    assert_event(await last_event(storage), "services_changed", "*", service_name=NAME)

    deleted = await api.delete(f"{EXTERNAL}/{NAME}")
    assert deleted.json() == updated
    assert await keys_of(storage) == (None, None, False)
    assert [e.event_type.value for e in await events(storage)] == ["services_changed"] * 3
    assert_error(await api.get(f"{EXTERNAL}/{NAME}"), 404, "service")
    assert_error(await api.delete(f"{EXTERNAL}/{NAME}"), 404, "service")


async def test_reserved_and_taken_names_are_refused(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    await register(api)
    await storage.docker_services.put(DockerService(service_name="web", internal_port=80))
    for name in ("api", NAME, "web"):
        response = await api.post(
            EXTERNAL, json={"service_name": name, "target_url": "https://other.example.com"}
        )
        assert_error(response, 409, "service_name")
    assert await storage.redis.get(keys.service_url("web")) == "http://web:80"
    assert await storage.redis.smembers(keys.SERVICES_EXTERNAL) == {NAME}


async def test_invalid_input_names_the_field(api: httpx.AsyncClient) -> None:
    for body, field in (
        ({"service_name": "-bad", "target_url": "https://x.example.com"}, "service_name"),
        ({"service_name": "ok", "target_url": "ftp://x.example.com"}, "target_url"),
        ({"service_name": "ok"}, "target_url"),
    ):
        assert_error(await api.post(EXTERNAL, json=body), 422, field)
    await register(api)
    assert_error(await api.put(f"{EXTERNAL}/{NAME}", json={"target_url": None}), 422, "target_url")
    assert_error(await api.get(f"{SERVICES}unified", params={"type": "vm"}), 422, "type")


async def test_another_owners_service_is_missing_for_every_operation(
    api: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    await register(api, "admins")
    bobs = await register(bob, "bobs")
    for response in (
        await bob.get(f"{EXTERNAL}/admins"),
        await bob.put(f"{EXTERNAL}/admins", json={"description": "mine now"}),
        await bob.put(f"{EXTERNAL}/admins", json={"target_url": "http://127.0.0.1:1"}),
        await bob.delete(f"{EXTERNAL}/admins"),
    ):
        assert_error(response, 404, "service")
    assert (await bob.get(EXTERNAL)).json() == [bobs]
    assert (await bob.get(f"{SERVICES}unified")).json() == [{**bobs, "status": "active"}]
    assert [s["service_name"] for s in (await api.get(EXTERNAL)).json()] == ["admins", "bobs"]
    changed = await api.put(f"{EXTERNAL}/bobs", json={"description": "checked"})
    assert changed.json()["description"] == "checked"
    assert (await bob.delete(f"{EXTERNAL}/bobs")).status_code == 200


async def test_unified_lists_the_internal_api_external_and_docker_services(
    api: httpx.AsyncClient, storage: Storage, gateway: Ready
) -> None:
    await register(api)
    await storage.docker_services.put(DockerService(service_name="web", internal_port=80))

    unified = (await api.get(f"{SERVICES}unified")).json()
    assert [(s["service_name"], s["service_type"]) for s in unified] == [
        ("api", "internal"),
        (NAME, "external"),
        ("web", "docker"),
    ]
    assert unified[0]["target_url"] == gateway.api_url
    assert await storage.redis.get(keys.service_url("api")) == gateway.api_url

    for kind, names in (("internal", ["api"]), ("external", [NAME]), ("docker", ["web"])):
        only = (await api.get(f"{SERVICES}unified", params={"type": kind})).json()
        assert [s["service_name"] for s in only] == names

    docker = (await api.get(SERVICES)).json()
    assert [s["service_name"] for s in docker] == ["web"]


async def test_docker_listing_is_empty_without_docker_services(api: httpx.AsyncClient) -> None:
    assert (await api.get(SERVICES)).json() == []
