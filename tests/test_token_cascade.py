"""Deleting a token deletes everything it owns, in one transaction, and nothing of anyone else."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable

import httpx
import trio

from oauthproxy.logs import schema as request_log
from oauthproxy.models.certificates import Certificate
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.models.routes import Route, TargetType
from oauthproxy.models.services import DockerService, ExternalService, PortAllocation
from oauthproxy.serve import Ready
from oauthproxy.storage import Storage, keys
from oauthproxy.storage.events import parse_event
from tests.eventually import eventually
from tests.test_proxies_api import as_new_token, events, stored

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


def _keys_of(tag: str, owner: str) -> list[str]:
    host = f"{tag}.example.com"
    return [
        keys.proxy(host),
        keys.cert(f"{tag}-cert"),
        keys.cert_domain(host),
        keys.route(f"{tag}-route"),
        keys.route_unique(f"/{tag}/", 50, owner),
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
    alice, bob = await _owner_hash(api, "alice"), await _owner_hash(api, "bob")
    await _give(storage, alice, "alice")
    await _give(storage, bob, "bob")
    assert await storage.redis.exists(_keys_of("alice", alice)) == len(_keys_of("alice", alice))

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
    assert await storage.redis.exists(_keys_of("alice", alice)) == 0
    assert await storage.redis.exists(_keys_of("bob", bob)) == len(_keys_of("bob", bob))
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
    logged = request_log.PREFIXES  # the request log records the refused call itself
    before = sorted(
        [k async for k in storage.redis.scan_iter(match="*") if not k.startswith(logged)]
    )
    response = await api.delete(f"{TOKENS}nobody")
    assert response.status_code == 404
    assert response.json()["field"] == "token"
    after = sorted(
        [k async for k in storage.redis.scan_iter(match="*") if not k.startswith(logged)]
    )
    assert before == after


async def presented(port: int, hostname: str) -> str | None:
    """The fingerprint of the certificate the HTTPS port presents for `hostname`, or None when
    it refuses the name."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(tcp, context, server_hostname=hostname)
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError:
        return None
    der: bytes = stream.getpeercert(binary_form=True)
    await stream.aclose()
    return "sha256:" + hashlib.sha256(der).hexdigest()


async def until_presented(port: int, hostname: str, done: Callable[[str | None], bool]) -> None:
    """Handshake with `hostname` until `done(fingerprint)`: well within the 60 s reconcile."""

    async def as_expected() -> bool:
        return done(await presented(port, hostname))

    await eventually(as_expected, what=f"the certificate {hostname} presents")


async def test_delete_never_touches_the_proxies_of_other_tokens(
    api: httpx.AsyncClient, storage: Storage, gateway: Ready
) -> None:
    host = "shared.example.com"
    async with as_new_token(api, gateway, "erin") as erin, as_new_token(api, gateway, "bob") as bob:
        body = {"cert_name": "erins", "domains": [host]}
        assert (await erin.post("/api/v1/certificates/self-signed", json=body)).status_code == 201
        target = {"hostname": host, "target_url": "http://127.0.0.1:3000"}
        created = await bob.post("/api/v1/proxy/targets/", json=target)
        assert created.headers["x-certificate-action"] == "skipped"  # erin's is not bob's
        body = {"cert_name": "bobs", "domains": [host]}
        certificate = (await bob.post("/api/v1/certificates/self-signed", json=body)).json()
    await until_presented(gateway.https_port, host, lambda f: f == certificate["fingerprint"])
    before = len(await events(storage))

    response = await api.delete(f"{TOKENS}erin")

    assert response.json()["deleted"]["certificates"] == ["erins"]
    assert (await events(storage))[before:] == []
    assert (await stored(storage, host))["cert_name"] == "bobs"
    assert await presented(gateway.https_port, host) == certificate["fingerprint"]


async def test_delete_hands_domains_only_to_certificates_that_survive(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    alice, bob = await _owner_hash(api, "alice"), await _owner_hash(api, "bob")
    host, alone = "both.example.com", "alone.example.com"
    issued = {"fullchain_pem": "chain", "private_key_pem": "key"}
    await storage.certificates.put(
        Certificate(cert_name="alice-1", domains=[host], owner_token_hash=alice, **issued)
    )
    await storage.certificates.create(
        Certificate(cert_name="alice-2", domains=[host, alone], owner_token_hash=alice, **issued)
    )
    await storage.certificates.create(
        Certificate(cert_name="bobs", domains=[host], owner_token_hash=bob)
    )
    assert await storage.certificates.name_for_domain(host) == "alice-1"

    assert (await api.delete(f"{TOKENS}alice")).status_code == 200

    assert await storage.certificates.name_for_domain(host) == "bobs"  # not alice-2, gone too
    assert await storage.certificates.name_for_domain(alone) is None
