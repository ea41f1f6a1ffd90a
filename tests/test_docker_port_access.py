"""A service's host port is its owner's; its `source_token` grants one other token its use.
Through the API, over the wire, with three owner tokens on a real gateway, Redis and dockerd:
who may target the port (proxies, routes, external services), who sees it, who may change or
release it, and that the token is never stored or logged."""

from __future__ import annotations

import logging

import httpx
import pytest

from oauthproxy.serve import Ready
from oauthproxy.storage import Storage, keys
from tests.conftest import free_port
from tests.docker_engine import IMAGE
from tests.test_docker_services import SERVICES, admin, create, docker_gateway
from tests.test_proxies_api import as_new_token

__all__ = ["admin", "docker_gateway"]  # fixtures this module uses

PROXIES = "/api/v1/proxy/targets/"


def secret_of(client: httpx.AsyncClient) -> str:
    return client.headers["Authorization"].removeprefix("Bearer ")


async def targets(client: httpx.AsyncClient, port: int, label: str) -> list[int]:
    """The answers to four ways of targeting `port` on this host: a proxy by address and by
    name, an external service, and a route of type `port` on the caller's own proxy."""
    answers = []
    for number, host in enumerate(("127.0.0.1", "localhost")):
        proxy = {"hostname": f"{label}{number}.example", "target_url": f"http://{host}:{port}"}
        answers.append((await client.post(PROXIES, json=proxy)).status_code)
    external = {"service_name": f"{label}-ext", "target_url": f"http://127.0.0.1:{port}"}
    answers.append((await client.post(f"{SERVICES}external", json=external)).status_code)
    route = {
        "path_pattern": f"/{label}", "target_type": "port", "target_value": str(port),
        "scope": "proxy", "proxy_hostnames": [f"{label}-front.example"],
    }  # fmt: skip
    answers.append((await client.post("/api/v1/routes/", json=route)).status_code)
    return answers


async def test_only_the_owner_and_the_source_token_may_target_a_port(
    admin: httpx.AsyncClient,
    docker_gateway: Ready,
    storage: Storage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    private, shared = free_port(), free_port()
    async with (
        as_new_token(admin, docker_gateway, "alice") as alice,
        as_new_token(admin, docker_gateway, "bob") as bob,
        as_new_token(admin, docker_gateway, "carol") as carol,
    ):
        for client, label in ((alice, "a"), (bob, "b"), (carol, "c")):
            front = {"hostname": f"{label}-front.example", "target_url": "http://10.9.9.9:80"}
            assert (await client.post(PROXIES, json=front)).status_code == 201
        await create(
            alice, "alices", image=IMAGE, start=False,
            port_configs=[{"name": "web", "host": private, "container": 80}],
        )  # fmt: skip
        granted = await alice.post(
            f"{SERVICES}alices/ports",
            json={"name": "api", "host": shared, "container": 81, "source_token": secret_of(bob)},
        )
        assert granted.status_code == 201, granted.text
        assert granted.json()["require_token"] is True

        assert await targets(bob, private, "b") == [403, 403, 403, 403]
        refused = await bob.post(
            PROXIES, json={"hostname": "b9.example", "target_url": f"http://127.0.0.1:{private}"}
        )
        assert (refused.json()["error"], refused.json()["field"]) == (
            "target_not_allowed", "target_url",
        )  # fmt: skip
        assert "alices" not in refused.text  # the refusal names no one else's service
        assert await targets(carol, shared, "c") == [403, 403, 403, 403]
        assert await targets(bob, shared, "b") == [201, 201, 201, 201]
        assert await targets(alice, private, "a") == [201, 201, 201, 201]
        admin_proxy = {"hostname": "adm.example", "target_url": f"http://127.0.0.1:{private}"}
        assert (await admin.post(PROXIES, json=admin_proxy)).status_code == 201

        seen = {
            name: {p["host_port"] for p in (await c.get(f"{SERVICES}ports")).json()["ports"]}
            for name, c in (("alice", alice), ("bob", bob), ("carol", carol))
        }
        assert seen == {"alice": {private, shared}, "bob": {shared}, "carol": set()}
        [bobs_view] = (await bob.get(f"{SERVICES}ports")).json()["ports"]
        assert (bobs_view["owner_token_hash"], bobs_view["source_token_hash"]) == (None, None)
        checks = {
            (name, port): (await c.post(f"{SERVICES}ports/check", json={"port": port})).json()
            for name, c in (("alice", alice), ("bob", bob), ("carol", carol))
            for port in (private, shared)
        }
        assert {key: check["access"] for key, check in checks.items()} == {
            ("alice", private): "owner", ("alice", shared): "owner",
            ("bob", private): "denied", ("bob", shared): "granted",
            ("carol", private): "denied", ("carol", shared): "denied",
        }  # fmt: skip
        assert all(check["available"] is False for check in checks.values())

        for method in ("PUT", "DELETE"):  # the grant is to use the port, not to change it
            changed = await bob.request(
                method, f"{SERVICES}alices/ports/api", json={} if method == "PUT" else None
            )
            assert changed.status_code == 404, changed.text
        assert (await bob.get(f"{SERVICES}alices/ports")).status_code == 404

        switched = await alice.put(f"{SERVICES}alices/ports/api", json={"require_token": False})
        assert switched.status_code == 200, switched.text
        assert (await bob.post(f"{SERVICES}ports/check", json={"port": shared})).json()[
            "access"
        ] == "denied"
        again = {"hostname": "b8.example", "target_url": f"http://127.0.0.1:{shared}"}
        assert (await bob.post(PROXIES, json=again)).status_code == 403

        stored = [await storage.redis.get(keys.port(port)) for port in (private, shared)]
        stored.append(str(await storage.redis.hgetall(keys.service_ports("alices"))))
        assert not any(secret_of(bob) in str(value) for value in stored)
        released = await alice.delete(f"{SERVICES}alices")
        assert released.status_code == 200, released.text
        free_again = {"hostname": "b7.example", "target_url": f"http://127.0.0.1:{private}"}
        assert (await bob.post(PROXIES, json=free_again)).status_code == 201
    for client in (alice, bob, carol):
        assert secret_of(client) not in caplog.text
