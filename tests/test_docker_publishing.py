"""Published ports (`-p`) on a real dockerd with a bridge of its own (`bridged_docker_engine`,
publishing through docker-proxy): a service's port answers from the host at the address it is
bound to and nowhere else; a port added to, re-bound on or removed from a running service takes
effect at once (its container is replaced, in one step); a replacement that the engine refuses
leaves the service as it was."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, keys
from tests.conftest import free_port
from tests.docker_engine import IMAGE, Engine
from tests.eventually import eventually
from tests.test_docker_services import SERVICES, admin_of, create, serve_on, through_gateway
from tests.test_proxies_api import as_new_token

ELSEWHERE = "127.0.0.2"
"""Another address of this host (all of 127/8 is loopback): a port bound to 127.0.0.1 does not
answer there, one bound to 0.0.0.0 does."""


@pytest.fixture
async def bridged_gateway(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    bridged_docker_engine: Engine,
) -> Ready:
    return await serve_on(nursery, make_settings, bridged_docker_engine)


@pytest.fixture
async def admin(bridged_gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_of(bridged_gateway) as client:
        yield client


async def answer(address: str, port: int) -> str:
    async with httpx.AsyncClient(timeout=5) as direct:
        return (await direct.get(f"http://{address}:{port}/index.html")).text


async def answers(address: str, port: int) -> str:
    """What the service says at `address:port`, once it is listening there."""

    async def said() -> str:
        return await answer(address, port)

    what = f"an answer on {address}:{port}"
    return await eventually(said, what=what, within=20, ignoring=(httpx.TransportError,))


async def refuses(address: str, port: int) -> None:
    async def refused() -> bool:
        try:
            await answer(address, port)
        except httpx.ConnectError:
            return True
        return False

    await eventually(refused, what=f"{address}:{port} refusing connections", within=20)


def bindings(engine: Engine, name: str) -> dict[str, Any]:
    inspected = json.loads(engine.docker("inspect", name))[0]
    found: dict[str, Any] = inspected["HostConfig"]["PortBindings"]
    return {"id": inspected["Id"], "state": inspected["State"]["Status"], "bindings": found}


async def test_ports_publish_where_they_are_bound_and_change_on_a_running_service(
    admin: httpx.AsyncClient,
    bridged_gateway: Ready,
    bridged_docker_engine: Engine,
    storage: Storage,
) -> None:
    local, everywhere = free_port(), free_port()
    created = await create(
        admin, "pub", image=IMAGE, command=["httpd", "-f", "-p", "80", "-h", "/www"],
        port_configs=[{"name": "local", "host": local, "container": 80, "bind": "127.0.0.1"}],
    )  # fmt: skip
    assert created["status"] == "running"
    assert created["port_configs"] == [
        {"name": "local", "host": local, "container": 80, "bind": "127.0.0.1",
         "protocol": "tcp", "source_token": None, "require_token": False},
    ]  # fmt: skip
    assert await answers("127.0.0.1", local) == "hello from busybox\n"
    await refuses(ELSEWHERE, local)
    before = bindings(bridged_docker_engine, "pub")
    assert before["bindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(local)}]}

    added = await admin.post(
        f"{SERVICES}pub/ports",
        json={"name": "everywhere", "host": everywhere, "container": 80, "bind": "0.0.0.0"},
    )
    assert added.status_code == 201, added.text
    assert (added.json()["host_port"], added.json()["republished"]) == (everywhere, True)
    after = bindings(bridged_docker_engine, "pub")
    assert after["id"] != before["id"] and after["state"] == "running"
    assert sorted(after["bindings"]["80/tcp"], key=lambda b: b["HostIp"]) == [
        {"HostIp": "0.0.0.0", "HostPort": str(everywhere)},
        {"HostIp": "127.0.0.1", "HostPort": str(local)},
    ]
    assert await answers(ELSEWHERE, everywhere) == "hello from busybox\n"
    assert await answers("127.0.0.1", local) == "hello from busybox\n"
    await refuses(ELSEWHERE, local)
    shown = (await admin.get(f"{SERVICES}pub")).json()
    assert {p["name"]: p["bind"] for p in shown["port_configs"]} == {
        "local": "127.0.0.1", "everywhere": "0.0.0.0"
    }  # fmt: skip

    proxy = {"hostname": "pub.example", "target_url": f"http://127.0.0.1:{everywhere}"}
    assert (await admin.post("/api/v1/proxy/targets/", json=proxy)).status_code == 201
    proxied = await through_gateway(bridged_gateway, "pub.example", 200)
    assert proxied.text == "hello from busybox\n"

    rebound = await admin.put(f"{SERVICES}pub/ports/everywhere", json={"bind": "127.0.0.1"})
    assert (rebound.status_code, rebound.json()["republished"]) == (200, True), rebound.text
    await refuses(ELSEWHERE, everywhere)
    assert await answers("127.0.0.1", everywhere) == "hello from busybox\n"

    removed = await admin.delete(f"{SERVICES}pub/ports/local")
    assert (removed.status_code, removed.json()["republished"]) == (200, True), removed.text
    await refuses("127.0.0.1", local)
    assert bindings(bridged_docker_engine, "pub")["bindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(everywhere)}]
    }

    with socket.socket() as squatter:  # the engine cannot publish a port someone listens on
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        kept = bindings(bridged_docker_engine, "pub")
        refused = await admin.post(
            f"{SERVICES}pub/ports", json={"name": "taken", "host": taken, "container": 80}
        )
        assert (refused.status_code, refused.json()["error"]) == (422, "docker_error")
        assert "address already in use" in refused.json()["detail"]
    assert await storage.redis.exists([keys.port(taken)]) == 0
    ports = (await admin.get(f"{SERVICES}pub/ports")).json()
    assert [p["port_name"] for p in ports] == ["everywhere"]
    restored = bindings(bridged_docker_engine, "pub")
    assert (restored["state"], restored["bindings"]) == ("running", kept["bindings"])
    assert await answers("127.0.0.1", everywhere) == "hello from busybox\n"
    assert (await admin.get(f"{SERVICES}pub")).json()["status"] == "running"

    deleted = await admin.delete(f"{SERVICES}pub", params={"delete_proxy": "true"})
    assert deleted.status_code == 200, deleted.text
    await refuses("127.0.0.1", everywhere)


async def test_an_owner_cannot_proxy_to_a_container_by_its_address(
    admin: httpx.AsyncClient, bridged_gateway: Ready, bridged_docker_engine: Engine
) -> None:
    """bob's service `bobweb` publishes nothing, and a `service` route to it is refused to
    alice; a proxy to its bridge address reached it all the same, past bob's routes, auth and
    port grants. Every address of the engine's networks is refused to owners now."""
    async with (
        as_new_token(admin, bridged_gateway, "alice") as alice,
        as_new_token(admin, bridged_gateway, "bob") as bob,
    ):
        bob.timeout = alice.timeout = httpx.Timeout(60)
        await create(bob, "bobweb", image=IMAGE, command=["httpd", "-f", "-p", "8080"], start=True)
        inspected = json.loads(bridged_docker_engine.docker("inspect", "bobweb"))[0]
        networks = inspected["NetworkSettings"]["Networks"]
        address = next(iter(networks.values()))["IPAddress"]
        assert address, networks
        for owner in (alice, bob):  # (bob reaches it through its service, as anyone should)
            taken = await owner.post(
                "/api/v1/proxy/targets/",
                json={
                    "hostname": "steal.example.com",
                    "target_url": f"http://{address}:8080",
                    "enable_https": False,
                },
            )
            assert (taken.status_code, taken.json().get("error")) == (403, "target_not_allowed")
        assert (await bob.delete(f"{SERVICES}bobweb")).status_code == 200


async def test_an_owners_host_ports_are_bounded_by_token_max_ports(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], bridged_docker_engine: Engine
) -> None:
    """The exposed range is shared by every owner: one owner allocated 150 ports of one
    service, with nothing to stop it before the range was empty for everyone."""
    gateway = await serve_on(nursery, make_settings, bridged_docker_engine, token_max_ports=3)
    async with admin_of(gateway) as admin, as_new_token(admin, gateway, "mallory") as mallory:
        mallory.timeout = httpx.Timeout(60)
        ports = [{"name": "p0", "container": 8000}]
        await create(mallory, "hog", image=IMAGE, start=False, port_configs=ports)
        statuses = []
        for index in range(1, 5):
            added = await mallory.post(
                f"{SERVICES}hog/ports", json={"name": f"p{index}", "container": 8000}
            )
            statuses.append(added.status_code)
        assert statuses == [201, 201, 403, 403], statuses
        assert added.json()["field"] == "TOKEN_MAX_PORTS"
        assert len((await mallory.get(f"{SERVICES}hog/ports")).json()) == 3
        assert (
            await admin.post(f"{SERVICES}hog/ports", json={"name": "a", "container": 1})
        ).status_code == 201
        assert (await mallory.delete(f"{SERVICES}hog")).status_code == 200
