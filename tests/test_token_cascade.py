"""Deleting a token deletes everything it owns, in one transaction, and nothing of anyone else."""

from __future__ import annotations

import httpx

from oauthproxy.models.certificates import Certificate
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.models.routes import Route, TargetType
from oauthproxy.models.services import DockerService, ExternalService, PortAllocation
from oauthproxy.storage import Storage, keys
from oauthproxy.storage.events import parse_event

TOKENS = "/api/v1/tokens/"


async def _owner_hash(api: httpx.AsyncClient, name: str) -> str:
    created = await api.post(f"{TOKENS}generate", json={"name": name})
    assert created.status_code == 201
    owner: str = created.json()["hash"]
    return owner


async def _give(storage: Storage, owner: str, tag: str) -> None:
    """Store one of each ownable resource for `owner`, named after `tag`."""
    host = f"{tag}.example.com"
    await storage.proxies.create(
        ProxyTarget(hostname=host, target_url="http://127.0.0.1:3000", owner_token_hash=owner)
    )
    await storage.certificates.put(
        Certificate(cert_name=f"{tag}-cert", domains=[host], owner_token_hash=owner)
    )
    await storage.routes.create(
        Route(
            route_id=f"{tag}-route",
            path_pattern=f"/{tag}/",
            target_type=TargetType.PORT,
            target_value="3000",
            owner_token_hash=owner,
        )
    )
    await storage.external_services.create(
        ExternalService(
            service_name=f"{tag}-ext",
            target_url="https://upstream.example.com",
            owner_token_hash=owner,
        )
    )
    await storage.docker_services.put(
        DockerService(service_name=f"{tag}-app", internal_port=8080, owner_token_hash=owner)
    )
    allocation = PortAllocation(
        service_name=f"{tag}-app", port_name="http", host_port=_port(tag), container_port=8080
    )
    await storage.redis.hset(
        keys.service_ports(f"{tag}-app"), {"http": allocation.model_dump_json()}
    )
    await storage.redis.set(keys.port(_port(tag)), allocation.model_dump_json())


def _port(tag: str) -> int:
    return 11000 + len(tag)


def _keys_of(tag: str) -> list[str]:
    host = f"{tag}.example.com"
    return [
        keys.proxy(host),
        keys.cert(f"{tag}-cert"),
        keys.cert_domain(host),
        keys.route(f"{tag}-route"),
        keys.route_unique(f"/{tag}/", 50),
        keys.route_priority(50, f"{tag}-route"),
        keys.service_external(f"{tag}-ext"),
        keys.service_url(f"{tag}-ext"),
        keys.docker_service(f"{tag}-app"),
        keys.service_url(f"{tag}-app"),
        keys.service_ports(f"{tag}-app"),
        keys.port(_port(tag)),
    ]


async def test_delete_cascades_to_owned_resources_only(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    await _give(storage, await _owner_hash(api, "alice"), "alice")
    await _give(storage, await _owner_hash(api, "bob"), "bob")
    assert await storage.redis.exists(_keys_of("alice")) == len(_keys_of("alice"))

    response = await api.delete(f"{TOKENS}alice")

    assert response.status_code == 200
    assert response.json() == {
        "name": "alice",
        "deleted": {
            "proxies": ["alice.example.com"],
            "certificates": ["alice-cert"],
            "services": ["alice-ext", "alice-app"],
            "routes": ["alice-route"],
        },
    }
    assert await storage.redis.exists(_keys_of("alice")) == 0
    assert await storage.redis.exists(_keys_of("bob")) == len(_keys_of("bob"))
    assert await storage.redis.sismember(keys.SERVICES_EXTERNAL, "alice-ext") is False
    assert await storage.redis.sismember(keys.SERVICES_EXTERNAL, "bob-ext") is True
    assert await storage.tokens.get("alice") is None
    assert await storage.tokens.get("bob") is not None


async def test_delete_publishes_proxy_deleted_events(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    await _give(storage, await _owner_hash(api, "carol"), "carol")
    assert (await api.delete(f"{TOKENS}carol")).status_code == 200
    entries = await storage.redis.xrange(keys.EVENTS_WORKFLOW)
    events = [parse_event(entry.field_values) for entry in entries]
    events = [e for e in events if e.event_type.value.startswith("proxy_")]
    assert [(e.event_type.value, e.hostname) for e in events] == [
        ("proxy_created", "carol.example.com"),
        ("proxy_deleted", "carol.example.com"),
    ]
    assert events[0].data == {"enable_http": True, "enable_https": True, "cert_name": None}


async def test_deleting_an_unknown_token_changes_nothing(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    await _give(storage, await _owner_hash(api, "dave"), "dave")
    before = sorted([key async for key in storage.redis.scan_iter(match="*")])
    response = await api.delete(f"{TOKENS}nobody")
    assert response.status_code == 404
    assert response.json()["field"] == "token"
    after = sorted([key async for key in storage.redis.scan_iter(match="*")])
    assert before == after
