"""`POST /api/v1/cleanup/orphaned` against orphans written straight into Redis, as an older or
crashed gateway could have left them: they go, in one transaction, and nothing else does."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import trio

from oauthproxy.logs import schema as request_log
from oauthproxy.models.certificates import Certificate
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.models.routes import Route, TargetType
from oauthproxy.models.services import DockerService, ExternalService, PortAllocation
from oauthproxy.serve import Ready
from oauthproxy.storage import Storage, keys
from tests.test_proxies_api import as_new_token, events

CLEANUP = "/api/v1/cleanup/orphaned"
GONE_OWNER = "sha256:" + "ab" * 32
"""The hash of a token a crashed gateway deleted without what it owned."""
ROTATED_OWNER = "sha256:" + "cd" * 32
"""The admin token's hash before ADMIN_TOKEN changed."""
IGNORED = ("events:", "workflow:", "oauth:", "service:url:api", *request_log.PREFIXES)
"""Keys the running gateway writes by itself meanwhile (the planted workflow state is checked on
its own; the request log records the cleanup calls themselves)."""
DEPARTED = keys.workflow_state("departed.example.com")


async def _give(storage: Storage, owner: str, created_by: str, tag: str) -> None:
    """One of each ownable record for `owner`, named after `tag`."""
    host = f"{tag}.example.com"
    mine = {"owner_token_hash": owner, "created_by": created_by}
    await storage.proxies.create(
        ProxyTarget(hostname=host, target_url="http://127.0.0.1:3000", **mine)
    )
    await storage.certificates.put(Certificate(cert_name=f"{tag}-cert", domains=[host], **mine))
    await storage.routes.create(
        Route(
            route_id=f"{tag}-route",
            path_pattern=f"/{tag}/",
            target_type=TargetType.PORT,
            target_value="3000",
            **mine,
        )
    )
    await storage.external_services.create(
        ExternalService(service_name=f"{tag}-ext", target_url="https://up.example.com", **mine)
    )
    await storage.docker_services.put(
        DockerService(service_name=f"{tag}-app", internal_port=8080, **mine)
    )
    allocation = PortAllocation(
        service_name=f"{tag}-app", port_name="http", host_port=18080, container_port=8080
    )
    await storage.redis.hset(
        keys.service_ports(f"{tag}-app"), {"http": allocation.model_dump_json()}
    )
    await storage.redis.set(keys.port(18080), f"{tag}-app")


async def _leave_dangling_keys(storage: Storage) -> None:
    redis = storage.redis
    await redis.set(keys.token_hash("sha256:" + "ee" * 32), "nobody")
    await storage.certificates.put(Certificate(cert_name="living", domains=["covered.example.com"]))
    await redis.set(keys.cert_domain("covered.example.com"), "vanished-cert")
    await redis.set(keys.cert_domain("lonely.example.com"), "vanished-cert")
    await redis.set(keys.cert_status("vanished-cert"), '{"cert_name": "vanished-cert"}')
    await redis.set(keys.route_unique("/ghost/", 50), "ghost-route")
    await redis.set(keys.route_priority(50, "ghost-route"), "ghost-route")
    await redis.set(keys.service_url("phantom"), "http://phantom:80")
    await redis.sadd(keys.SERVICES_EXTERNAL, ["vanished"])
    await redis.hset(DEPARTED, {"r1": '{"state": "running"}'})


async def _snapshot(storage: Storage) -> dict[str, Any]:
    """Every key the test cares about with its value (hashes and sets as dicts and lists)."""
    found: dict[str, Any] = {}
    async for key in storage.redis.scan_iter(match="*"):
        if key.startswith(IGNORED):
            continue
        kind = await storage.redis.type(key)
        if kind == "string":
            found[key] = await storage.redis.get(key)
        elif kind == "hash":
            found[key] = dict(await storage.redis.hgetall(key))
        elif kind == "set":
            found[key] = sorted(await storage.redis.smembers(key))
    return found


ORPHAN_KEYS = {
    "proxy:gone.example.com",
    "cert:gone-cert",
    "route:gone-route",
    f"route:unique:/gone/:50:{GONE_OWNER}",
    "route:priority:50:gone-route",
    "service:external:gone-ext",
    "service:url:gone-ext",
    "docker_service:gone-app",
    "service:url:gone-app",
    "service:ports:gone-app",
    "port:18080",
    "token:hash:sha256:" + "ee" * 32,
    "cert:domain:lonely.example.com",
    "cert:domain:gone.example.com",
    "cert:status:vanished-cert",
    "route:unique:/ghost/:50",
    "route:priority:50:ghost-route",
    "service:url:phantom",
}


async def test_orphans_go_and_everything_else_stays(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    created = await api.post("/api/v1/tokens/generate", json={"name": "dev"})
    dev = created.json()["hash"]
    await _give(storage, GONE_OWNER, "ghost", "gone")
    await _give(storage, ROTATED_OWNER, "admin", "kept")
    await storage.redis.delete([keys.port(18080)])  # both tags share the port number
    await storage.proxies.create(
        ProxyTarget(
            hostname="dev.example.com", target_url="http://127.0.0.1:1", owner_token_hash=dev
        )
    )
    await storage.routes.create(
        Route(
            route_id="later",
            path_pattern="/later/",
            target_type=TargetType.SERVICE,
            target_value="not-yet",
            owner_token_hash=dev,
        )
    )
    await _leave_dangling_keys(storage)
    await storage.redis.set(keys.port(18080), "gone-app")
    before = await _snapshot(storage)

    assert await storage.redis.exists([DEPARTED])
    dry = await api.post(f"{CLEANUP}?dry_run=true")
    assert dry.status_code == 200, dry.text
    assert (dry.json()["dry_run"], dry.json()["removed"]) == (True, 0)
    assert await _snapshot(storage) == before

    done = await api.post(CLEANUP)
    assert done.status_code == 200, done.text
    report = done.json()
    assert report["orphans"] == dry.json()["orphans"]
    actions = {(o["kind"], o["name"]): o["action"] for o in report["orphans"]}
    assert actions == {
        ("token_hash", "sha256:" + "ee" * 32): "delete",
        ("proxy", "gone.example.com"): "delete",
        ("certificate", "gone-cert"): "delete",
        ("service", "gone-ext"): "delete",
        ("docker_service", "gone-app"): "delete",
        ("route", "gone-route"): "delete",
        ("proxy", "kept.example.com"): "keep",
        ("certificate", "kept-cert"): "keep",
        ("service", "kept-ext"): "keep",
        ("docker_service", "kept-app"): "keep",
        ("route", "kept-route"): "keep",
        ("cert_domain", "covered.example.com"): "hand_over",
        ("cert_domain", "lonely.example.com"): "delete",
        ("route_index", "unique:/ghost/:50"): "delete",
        ("route_index", "priority:50:ghost-route"): "delete",
        ("service_set_entry", "vanished"): "delete",
        ("service_url", "phantom"): "delete",
        ("workflow_state", "departed.example.com"): "delete",
        ("cert_status", "vanished-cert"): "delete",
        ("route", "later"): "keep",
    }
    assert report["removed"] == sum(1 for a in actions.values() if a != "keep")

    after = await _snapshot(storage)
    expected = {key: value for key, value in before.items() if key not in ORPHAN_KEYS}
    expected[keys.cert_domain("covered.example.com")] = "living"
    expected[keys.SERVICES_EXTERNAL] = sorted(["kept-ext"])
    assert after == expected
    assert not await storage.redis.exists([DEPARTED])

    again = await api.post(CLEANUP)
    assert [o["action"] for o in again.json()["orphans"]] == ["keep"] * 6
    assert again.json()["removed"] == 0


async def test_the_deletions_are_announced(api: httpx.AsyncClient, storage: Storage) -> None:
    await _give(storage, GONE_OWNER, "ghost", "gone")
    before = len(await events(storage))
    assert (await api.post(CLEANUP)).status_code == 200
    kinds = [event.event_type.value for event in (await events(storage))[before:]]
    assert "proxy_deleted" in kinds
    assert kinds.count("services_changed") == 1
    assert kinds.count("routes_changed") == 1


async def test_only_the_admin_may_clean_up(api: httpx.AsyncClient, gateway: Any) -> None:
    secret = (await api.post("/api/v1/tokens/generate", json={"name": "dev"})).json()["token"]
    async with httpx.AsyncClient(base_url=gateway.api_url) as client:
        refused = await client.post(CLEANUP, headers={"Authorization": f"Bearer {secret}"})
        assert refused.status_code == 403
        assert refused.json()["field"] == "Authorization"
    invalid = await api.post(f"{CLEANUP}?dry_run=maybe")
    assert invalid.status_code == 422
    assert invalid.json()["field"] == "dry_run"


async def test_nothing_to_do(api: httpx.AsyncClient) -> None:
    response = await api.post(CLEANUP)
    assert response.json() == {"dry_run": False, "removed": 0, "orphans": []}


async def test_a_link_across_owners_is_reported_and_kept(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    """An older gateway let an owner's certificate be named by another owner's proxy."""
    alice = (await api.post("/api/v1/tokens/generate", json={"name": "alice"})).json()["hash"]
    mallory = (await api.post("/api/v1/tokens/generate", json={"name": "mallory"})).json()["hash"]
    host = "victim.example.com"
    await storage.certificates.put(
        Certificate(
            cert_name="evil", domains=[host], owner_token_hash=mallory, created_by="mallory"
        )
    )
    await storage.proxies.create(
        ProxyTarget(
            hostname=host,
            target_url="http://127.0.0.1:3000",
            cert_name="evil",
            owner_token_hash=alice,
            created_by="alice",
        )
    )
    report = (await api.post(CLEANUP)).json()
    assert report["removed"] == 0
    assert [(o["kind"], o["name"], o["action"]) for o in report["orphans"]] == [
        ("proxy", host, "keep")
    ]
    assert "of another owner" in report["orphans"][0]["problem"]
    assert (await storage.proxies.get(host)) is not None


async def test_an_owner_cannot_keep_the_admins_clean_up_from_committing(
    api: httpx.AsyncClient, gateway: Ready, storage: Storage
) -> None:
    """`clean_up` surveys, watches, surveys again and starts over unless the two surveys agree;
    they had to agree on the entries only reported (`keep`) too. An owner's proxy naming a
    certificate that does not exist is such an entry, and its problem names the certificate:
    an owner renaming its proxy's `cert_name` in a loop made every pair differ, and the admin's
    clean-up of real orphans never committed while it ran."""
    await storage.redis.hset("workflow:state:ghost.example.com", {"r1": "{}"})  # a real orphan
    async with as_new_token(api, gateway, "jammer") as owner:
        body = {"hostname": "own.example.com", "target_url": "http://127.0.0.1:3000"}
        assert (await owner.post("/api/v1/proxy/targets/", json=body)).status_code == 201
        stop = trio.Event()

        async def jam(lane: int) -> None:
            for n in itertools.count():
                if stop.is_set():
                    return
                change = {"cert_name": f"missing-{lane}-{n}"}
                changed = await owner.put("/api/v1/proxy/targets/own.example.com", json=change)
                assert changed.status_code == 200, changed.text

        answers = []
        async with trio.open_nursery() as nursery:
            for lane in range(4):
                nursery.start_soon(jam, lane)
            await trio.sleep(0.5)
            for _ in range(3):
                answer = await api.post("/api/v1/cleanup/orphaned", timeout=120)
                answers.append(answer.status_code)
            stop.set()
    assert answers == [200, 200, 200], answers
    assert not await storage.redis.exists(["workflow:state:ghost.example.com"])
