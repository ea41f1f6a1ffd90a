"""Host ports of Docker services through the API, on a real dockerd and a real Redis: 100
concurrent allocations are 100 distinct ports, refused ports say why, ports go with their
service; and a gateway whose engine is away (or goes away) answers 503 naming DOCKER_HOST."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from oauthproxy.models.services import DockerService
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, keys
from tests.docker_engine import IMAGE, Engine, start_engine, stop_engine
from tests.test_docker_services import SERVICES, admin, admin_of, create, docker_gateway, serve_on

__all__ = ["admin", "docker_gateway"]  # fixtures this module uses


async def test_a_hundred_concurrent_allocations_on_two_replicas_get_a_hundred_ports(
    admin: httpx.AsyncClient,
    storage: Storage,
    nursery: trio.Nursery,
    make_settings: Callable[..., Settings],
    docker_engine: Engine,
) -> None:
    """Half the requests go to a second gateway on the same Redis: the Lua script, not a lock
    in one process, is what keeps the ports distinct. The service is on the host network, which
    publishes nothing, so no request waits for a container to be replaced (the service lock
    would serialise them): the allocations themselves race."""
    await create(admin, "many", image=IMAGE, start=False, networks=["host"])
    settings = make_settings(docker_host=docker_engine.host)
    second: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    headers = {"Authorization": admin.headers["Authorization"]}
    got: list[dict[str, Any]] = []

    async def add(client: httpx.AsyncClient, index: int) -> None:
        response = await client.post(
            f"{SERVICES}many/ports", json={"name": f"p{index}", "container": 8000 + index}
        )
        assert response.status_code == 201, response.text
        got.append(response.json())

    async with (
        httpx.AsyncClient(base_url=second.api_url, headers=headers, timeout=60) as other,
        trio.open_nursery() as requests,
    ):
        for index in range(100):
            requests.start_soon(add, admin if index % 2 else other, index)
    ports = {port["host_port"] for port in got}
    assert len(ports) == 100
    assert all(11000 <= port <= 65535 for port in ports)
    listed = (await admin.get(f"{SERVICES}many/ports")).json()
    assert {port["host_port"] for port in listed} == ports
    assert len((await admin.get(f"{SERVICES}ports")).json()["ports"]) == 100

    assert (await admin.delete(f"{SERVICES}many")).status_code == 200
    left = [await storage.redis.exists([keys.port(port)]) for port in ports]
    assert sum(left) == 0
    assert await storage.redis.exists([keys.service_ports("many")]) == 0


async def test_restricted_internal_and_taken_ports_are_refused_with_a_reason(
    admin: httpx.AsyncClient, storage: Storage
) -> None:
    await create(admin, "picky", image=IMAGE, start=False)
    for port, words in [(6379, "restricted"), (22, "restricted"), (9500, "internal range"),
                        (3000, "outside the exposed range")]:  # fmt: skip
        refused = await admin.post(
            f"{SERVICES}picky/ports", json={"name": "x", "host": port, "container": 80}
        )
        assert refused.status_code == 422, refused.text
        assert (refused.json()["error"], refused.json()["field"]) == ("port_not_allowed", "host")
        assert words in refused.json()["detail"]
        checked = await admin.post(f"{SERVICES}ports/check", json={"port": port})
        assert checked.json()["available"] is False and words in checked.json()["reason"]
    out_of_range = await admin.post(
        f"{SERVICES}picky/ports", json={"name": "x", "host": 70000, "container": 80}
    )
    assert (out_of_range.status_code, out_of_range.json()["field"]) == (422, "host")

    first = await admin.post(
        f"{SERVICES}picky/ports",
        json={"name": "web", "host": 12345, "container": 80, "source_token": "s3cret-token"},
    )
    assert first.status_code == 201, first.text
    assert first.json()["source_token_hash"].startswith("sha256:")
    assert first.json()["require_token"] is True
    assert "s3cret-token" not in str(await storage.redis.get(keys.port(12345)))
    taken = await admin.post(
        f"{SERVICES}picky/ports", json={"name": "other", "host": 12345, "container": 80}
    )
    assert (taken.status_code, taken.json()["field"]) == (409, "host_port")
    checked = await admin.post(f"{SERVICES}ports/check", json={"port": 12345})
    assert checked.json() == {
        "port": 12345, "bind_address": "127.0.0.1", "available": False,
        "reason": "port 12345 is already allocated", "access": "owner",
    }  # fmt: skip

    changed = await admin.put(f"{SERVICES}picky/ports/web", json={"bind": "0.0.0.0"})
    assert changed.json()["bind_address"] == "0.0.0.0"
    available = (await admin.get(f"{SERVICES}ports/available")).json()
    assert available["exposed"] == {"start": 11000, "end": 65535}
    assert 6379 in available["restricted"] and available["allocated"] == 1
    removed = await admin.delete(f"{SERVICES}picky/ports/web")
    assert removed.status_code == 200
    assert await storage.redis.exists([keys.port(12345)]) == 0
    assert (await admin.delete(f"{SERVICES}picky/ports/web")).status_code == 404
    assert (await admin.delete(f"{SERVICES}picky")).status_code == 200


async def test_ports_given_at_create_are_published_by_the_engine(
    admin: httpx.AsyncClient, docker_gateway: Ready
) -> None:
    created = await create(
        admin,
        "exposed",
        image=IMAGE,
        start=False,
        port_configs=[{"name": "http", "container": 80, "bind": "127.0.0.1"}],
    )
    [port] = created["port_configs"]
    assert port["host"] >= 11000 and port["source_token"] is None
    listed = (await admin.get(f"{SERVICES}exposed/ports")).json()
    assert [(p["port_name"], p["host_port"]) for p in listed] == [("http", port["host"])]
    assert (await admin.delete(f"{SERVICES}exposed")).status_code == 200


async def test_without_an_engine_the_gateway_serves_and_docker_endpoints_say_503(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    root = Path(tempfile.mkdtemp(prefix="dk", dir="/tmp"))
    engine = start_engine(root)
    try:
        settings = make_settings(docker_host=engine.host)
        gateway: Ready = await nursery.start(
            lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
        )
        headers = {"Authorization": f"Bearer {gateway.admin_token.secret}"}
        async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as api:
            health = (await api.get("/health")).json()
            assert health["components"]["docker"]["status"] == "ok"
            await storage.docker_services.put(_record("left"))
            await trio.to_thread.run_sync(stop_engine, engine)

            health_response = await api.get("/health")
            assert health_response.status_code == 200
            docker = health_response.json()["components"]["docker"]
            assert docker["status"] == "unavailable"
            assert f"DOCKER_HOST={engine.host}" in docker["error"]
            for method, path, body in [
                ("POST", SERVICES, {"service_name": "new", "image": IMAGE}),
                ("POST", f"{SERVICES}left/start", None),
                ("GET", f"{SERVICES}left/logs", None),
                ("GET", f"{SERVICES}left/stats", None),
                ("DELETE", f"{SERVICES}left", None),
            ]:
                response = await api.request(method, path, json=body)
                assert response.status_code == 503, (path, response.text)
                assert response.json()["error"] == "docker_unavailable"
                assert "DOCKER_HOST" in response.json()["detail"]
            unified = (await api.get(f"{SERVICES}unified")).json()
            assert {s["service_name"]: s["status"] for s in unified}["left"] == "unknown"
            assert (await api.get(f"{SERVICES}left")).json()["status"] == "unknown"
            assert await storage.redis.exists([keys.docker_service("new")]) == 0
    finally:
        stop_engine(engine)


def _record(name: str) -> DockerService:
    return DockerService(service_name=name, image=IMAGE)


async def test_openapi_lists_every_service_and_port_endpoint_of_the_spec(
    anonymous: httpx.AsyncClient,
) -> None:
    paths = (await anonymous.get("/api/v1/openapi.json")).json()["paths"]
    for path, methods in (
        ("/api/v1/services/", {"get", "post"}),
        ("/api/v1/services/{name}", {"get", "put", "delete"}),
        ("/api/v1/services/{name}/start", {"post"}),
        ("/api/v1/services/{name}/stop", {"post"}),
        ("/api/v1/services/{name}/restart", {"post"}),
        ("/api/v1/services/{name}/logs", {"get"}),
        ("/api/v1/services/{name}/stats", {"get"}),
        ("/api/v1/services/{name}/proxy", {"post"}),
        ("/api/v1/services/cleanup", {"post"}),
        ("/api/v1/services/{name}/ports", {"get", "post"}),
        ("/api/v1/services/{name}/ports/{port_name}", {"put", "delete"}),
        ("/api/v1/services/ports", {"get"}),
        ("/api/v1/services/ports/available", {"get"}),
        ("/api/v1/services/ports/check", {"post"}),
    ):
        assert set(paths[path]) >= methods, path


async def test_docker_api_version_is_the_version_the_gateway_speaks(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], docker_engine: Engine
) -> None:
    """DOCKER_API_VERSION reaches the engine: one it does not speak is refused, and said so."""
    gateway = await serve_on(nursery, make_settings, docker_engine, docker_api_version="1.99")
    async with admin_of(gateway) as api:
        docker = (await api.get("/health")).json()["components"]["docker"]
        assert docker["status"] == "unavailable", docker
        assert "1.99 is too new" in docker["error"]
        refused = await api.post(SERVICES, json={"service_name": "old", "image": IMAGE})
        assert (refused.status_code, refused.json()["error"]) == (422, "docker_error")


async def test_concurrent_port_changes_of_a_running_service_all_end_up_published(
    admin: httpx.AsyncClient, docker_engine: Engine
) -> None:
    """Each change replaces the container under the service's lock, publishing every port held
    at that moment: none is lost between two replacements, the container runs at the end."""
    await create(admin, "busy", image=IMAGE, command=["sleep", "300"])
    answers: list[dict[str, Any]] = []

    async def add(index: int) -> None:
        response = await admin.post(
            f"{SERVICES}busy/ports", json={"name": f"p{index}", "container": 8000 + index}
        )
        assert response.status_code == 201, response.text
        answers.append(response.json())

    async with trio.open_nursery() as requests:
        for index in range(6):
            requests.start_soon(add, index)
    assert all(answer["republished"] for answer in answers)
    inspected = json.loads(docker_engine.docker("inspect", "busy"))[0]
    assert inspected["State"]["Status"] == "running"
    published = {
        (int(key.split("/")[0]), int(binding["HostPort"]))
        for key, bindings in inspected["HostConfig"]["PortBindings"].items()
        for binding in bindings
    }
    assert published == {(a["container_port"], a["host_port"]) for a in answers}
    assert (await admin.delete(f"{SERVICES}busy")).status_code == 200
