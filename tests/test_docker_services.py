"""Docker services against a real dockerd (started by `tests.docker_engine`) through a real
gateway: create from an image and from a Dockerfile, proxy through the public port, logs, stats,
limits, stop/restart/delete as the engine reports them, and owner scoping."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from oauthproxy.api.docker_services import DOCKER_LOG_FOLLOWS_PER_TOKEN
from oauthproxy.models.services import DockerService
from oauthproxy.serve import Ready, serve
from oauthproxy.services.docker import ContainerState, DockerEngine
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, keys
from tests.conftest import free_port
from tests.docker_engine import IMAGE, Engine
from tests.eventually import eventually
from tests.test_proxies_api import as_new_token

SERVICES = "/api/v1/services/"


async def serve_on(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], engine: Engine, **settings: Any
) -> Ready:
    """A gateway driving `engine`, for the test's life."""
    configured = make_settings(docker_host=engine.host, **settings)
    ready: Ready = await nursery.start(
        lambda task_status: serve(configured, handle_signals=False, task_status=task_status)
    )
    return ready


@asynccontextmanager
async def admin_of(gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's API as its admin token, with time for the engine to build and replace."""
    headers = {"Authorization": f"Bearer {gateway.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers, timeout=90) as client:
        yield client


@pytest.fixture
async def docker_gateway(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    docker_engine: Engine,
) -> Ready:
    return await serve_on(nursery, make_settings, docker_engine, token_max_services=2)


@pytest.fixture
async def admin(docker_gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_of(docker_gateway) as client:
        yield client


def httpd(port: int) -> list[str]:
    return ["sh", "-c", f"echo serving on {port}; exec httpd -f -v -p 127.0.0.1:{port} -h /www"]


async def create(client: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    response = await client.post(SERVICES, json={"service_name": name, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def container_exists(engine: Engine, name: str) -> bool:
    return engine.docker("ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Names}}") != ""


def container_status(engine: Engine, name: str) -> str:
    return engine.docker("inspect", "--format", "{{.State.Status}}", name)


async def through_gateway(gateway: Ready, host: str, want: int) -> httpx.Response:
    """GET / on the public port as `host`, until it answers `want` (changes apply in order,
    but not instantly)."""
    url = f"http://127.0.0.1:{gateway.http_port}/index.html"

    async def answered() -> httpx.Response | None:
        async with httpx.AsyncClient() as public:
            response = await public.get(url, headers={"Host": host})
        return response if response.status_code == want else None

    return await eventually(answered, what=f"{host} answering {want}", within=20)


async def test_service_from_an_image_proxied_logged_measured_stopped_deleted(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine, storage: Storage
) -> None:
    port = free_port()
    created = await create(
        admin,
        "web",
        image=IMAGE,
        command=httpd(port),
        internal_port=port,
        networks=["host"],
        memory_limit="64m",
        cpu_limit=0.5,
        labels={"team": "qa"},
        environment={"GREETING": "hi"},
    )
    assert created["status"] == "running"
    assert container_status(docker_engine, "web") == "running"
    inspected = json.loads(docker_engine.docker("inspect", "web"))[0]
    assert inspected["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert inspected["HostConfig"]["NanoCpus"] == 500_000_000
    assert inspected["HostConfig"]["PidsLimit"] == 4096  # no fork bomb takes the host's pids
    labels = inspected["Config"]["Labels"]
    assert labels["team"] == "qa" and labels["oauthproxy.service"] == "web"
    assert "GREETING=hi" in inspected["Config"]["Env"]
    assert await storage.redis.get(keys.service_url("web")) == f"http://127.0.0.1:{port}"

    proxy = await admin.post(f"{SERVICES}web/proxy", json={})
    assert proxy.status_code == 201, proxy.text
    assert proxy.json()["hostname"] == "web.localhost"
    answered = await through_gateway(docker_gateway, "web.localhost", 200)
    assert answered.text == "hello from busybox\n"

    logs = await admin.get(f"{SERVICES}web/logs", params={"lines": 50, "timestamps": "true"})
    assert logs.status_code == 200, logs.text
    assert any(line.endswith(f"serving on {port}") for line in logs.json()["lines"])
    assert logs.json()["lines"][0][:4].isdigit()  # a timestamp first
    stats = await admin.get(f"{SERVICES}web/stats")
    assert stats.json()["memory_limit"] == 64 * 1024 * 1024
    assert stats.json()["memory_used"] > 0

    updated = await admin.put(f"{SERVICES}web", json={"memory_limit": "96m"})
    assert updated.status_code == 200, updated.text
    assert json.loads(docker_engine.docker("inspect", "web"))[0]["HostConfig"]["Memory"] == (
        96 * 1024 * 1024
    )

    running = await admin.delete(f"{SERVICES}web", params={"force": "false"})
    assert (running.status_code, running.json()["field"]) == (409, "force")
    stopped = await admin.post(f"{SERVICES}web/stop")
    assert stopped.json()["status"] == "exited"
    assert container_status(docker_engine, "web") == "exited"
    stopped_answer = await through_gateway(docker_gateway, "web.localhost", 503)
    assert stopped_answer.json()["error"] == "service_down"
    restarted = await admin.post(f"{SERVICES}web/restart")
    assert restarted.json()["status"] == "running"
    await through_gateway(docker_gateway, "web.localhost", 200)

    deleted = await admin.delete(f"{SERVICES}web", params={"delete_proxy": "true"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted_proxies"] == ["web.localhost"]
    assert not container_exists(docker_engine, "web")
    assert await storage.redis.exists([keys.docker_service("web"), keys.service_url("web")]) == 0
    assert (await admin.get(f"{SERVICES}web")).status_code == 404
    assert (await admin.get("/api/v1/proxy/targets/web.localhost")).status_code == 404


async def test_service_from_a_dockerfile_takes_its_exposed_port(
    admin: httpx.AsyncClient, docker_engine: Engine, tmp_path: Path
) -> None:
    port = free_port()
    (tmp_path / "Dockerfile").write_text(
        f"FROM {IMAGE}\nEXPOSE {port}\nCMD {json.dumps(httpd(port))}\n"
    )
    created = await create(
        admin, "built", dockerfile_path=str(tmp_path / "Dockerfile"), networks=["host"]
    )
    assert created["internal_port"] == port
    assert created["image"] == "oauthproxy-built:latest"

    async def listening() -> httpx.Response:
        async with httpx.AsyncClient() as direct:
            return await direct.get(f"http://127.0.0.1:{port}/index.html")

    response = await eventually(
        listening, what=f"the built service on port {port}", ignoring=(httpx.TransportError,)
    )
    assert response.text == "hello from busybox\n"
    listed = await admin.get("/api/v1/services/unified", params={"type": "docker"})
    assert [(s["service_name"], s["status"]) for s in listed.json()] == [("built", "running")]
    assert (await admin.delete(f"{SERVICES}built")).status_code == 200


async def test_a_failed_create_leaves_nothing_behind(
    admin: httpx.AsyncClient, docker_engine: Engine, storage: Storage
) -> None:
    response = await admin.post(
        SERVICES, json={"service_name": "ghost", "image": "no-such-image:never"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "docker_error"
    assert (
        await storage.redis.exists([keys.docker_service("ghost"), keys.service_url("ghost")]) == 0
    )
    assert not container_exists(docker_engine, "ghost")


async def test_an_owners_service_is_not_named_like_another_host(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine
) -> None:
    """A Docker service is reached at http://{service_name}:{internal_port}, and a `service`
    route to it is checked by ownership, not by address: a service named `127.0.0.1` with the
    admin API's port as its internal port, and a route to it, sent public requests to the admin
    API (the same for `169.254.169.254`, `localhost`, a compose service's name...)."""
    async with as_new_token(admin, docker_gateway, "mallory") as mallory:
        for name in ("127.0.0.1", "localhost", "2130706433"):
            body = {"service_name": name, "image": IMAGE, "internal_port": 9000}
            refused = await mallory.post(SERVICES, json=body)
            assert (refused.status_code, refused.json()["field"]) == (403, "service_name"), name
            assert not container_exists(docker_engine, name)
        assert (await mallory.get(SERVICES)).json() == []


async def test_a_service_named_like_an_id_prefix_never_reaches_that_container(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine
) -> None:
    """The engine reads a bare reference as a full ID, else a name, else an ID prefix: Mallory's
    service named like the start of Alice's container's ID, with an image that cannot be
    pulled, failed to create, and undoing it force-removed Alice's container (any owner could
    remove every other owner's, a prefix at a time). Every action finds the service's own
    container by its exact name and our labels."""
    async with (
        as_new_token(admin, docker_gateway, "alice") as alice,
        as_new_token(admin, docker_gateway, "mallory") as mallory,
    ):
        alice.timeout = mallory.timeout = httpx.Timeout(90)
        victim = {"service_name": "victim", "image": IMAGE, "command": ["sleep", "300"]}
        assert (await alice.post(SERVICES, json=victim)).status_code == 201
        full_id = docker_engine.docker("inspect", "--format", "{{.Id}}", "victim")
        prefix = full_id[:12]  # no container has this name: the engine took it as an ID prefix
        attempt = {"service_name": prefix, "image": IMAGE, "memory_limit": "4m"}  # (under 6 MB)
        failed = await mallory.post(SERVICES, json=attempt)
        assert failed.status_code >= 400, failed.text
        assert container_status(docker_engine, "victim") == "running"
        for action in ("stop", "restart", "start"):
            assert (await mallory.post(f"{SERVICES}{prefix}/{action}")).status_code == 404
        assert container_status(docker_engine, "victim") == "running"
        assert (await alice.delete(f"{SERVICES}victim")).status_code == 200


async def test_a_service_named_like_a_container_not_ours_leaves_that_container_alone(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine
) -> None:
    """The create fails (the name is taken on the engine), and undoing it removed the container
    of that name, whoever's it was: an owner could remove the gateway's Redis, or anything on
    the host. The gateway removes only containers carrying its label."""
    docker_engine.docker("create", "--name", "victim-db", IMAGE, "sleep", "300")
    docker_engine.docker("start", "victim-db")
    try:
        async with as_new_token(admin, docker_gateway, "mallory") as mallory:
            taken = await mallory.post(SERVICES, json={"service_name": "victim-db", "image": IMAGE})
            assert taken.status_code == 409, taken.text
            assert taken.json()["field"] == "service_name"
            # the engine's message names the other container's ID: the owner does not see it
            victim_id = docker_engine.docker("inspect", "--format", "{{.Id}}", "victim-db")
            assert victim_id.strip()[:12] not in taken.text
            assert container_status(docker_engine, "victim-db") == "running"
            assert (await mallory.get(SERVICES)).json() == []
    finally:
        docker_engine.docker("rm", "-f", "victim-db")


async def test_an_owner_cannot_run_an_image_the_admin_built_from_host_files(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine, tmp_path: Path
) -> None:
    """`dockerfile_path` is the admin's because the build copies the gateway host's files;
    the image it makes (`oauthproxy-{service}:latest`) ran for any owner who named it, and
    `cat` gave its files to the owner's logs. Refused by name in every spelling, and by ID."""
    (tmp_path / "secret.txt").write_text("ADMIN-ONLY\n")
    (tmp_path / "Dockerfile").write_text(f"FROM {IMAGE}\nCOPY secret.txt /secret.txt\n")
    dockerfile = str(tmp_path / "Dockerfile")
    built = await admin.post(
        SERVICES, json={"service_name": "adminapp", "dockerfile_path": dockerfile, "start": False}
    )
    assert built.status_code == 201, built.text
    image_id = docker_engine.docker("image", "inspect", "-f", "{{.Id}}", "oauthproxy-adminapp")
    digits = image_id.strip().removeprefix("sha256:")
    async with as_new_token(admin, docker_gateway, "mallory") as mallory:
        for image in [
            "oauthproxy-adminapp:latest",
            "docker.io/library/oauthproxy-adminapp",
            "library/oauthproxy-adminapp:latest",
            image_id.strip(),
            # the engine finds an image by any unique prefix of its ID: an owner tried at most
            # 16 names per digit (an attack hunt ran the admin's image as `digits[:2]`)
            digits[:1],
            digits[:6],
            digits[:11],
            f"sha256:{digits[:8]}",
        ]:
            ran = await mallory.post(
                SERVICES, json={"service_name": "thief", "image": image, "start": False}
            )
            assert (ran.status_code, ran.json().get("field")) == (403, "image"), (image, ran.text)
        await create(mallory, "mine", image=IMAGE, start=False)
        swapped = await mallory.put(f"{SERVICES}mine", json={"image": "oauthproxy-adminapp"})
        assert (swapped.status_code, swapped.json().get("field")) == (403, "image"), swapped.text
        assert (await mallory.delete(f"{SERVICES}mine")).status_code == 200
    assert (await admin.delete(f"{SERVICES}adminapp")).status_code == 200


async def test_an_owner_manages_only_its_own_services(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine
) -> None:
    async with (
        as_new_token(admin, docker_gateway, "alice") as alice,
        as_new_token(admin, docker_gateway, "bob") as bob,
    ):
        await create(bob, "bobs", image=IMAGE, command=["sleep", "300"], start=False)
        assert container_status(docker_engine, "bobs") == "created"
        for method, path in [
            ("GET", "bobs"), ("POST", "bobs/start"), ("POST", "bobs/stop"), ("GET", "bobs/logs"),
            ("DELETE", "bobs"), ("GET", "bobs/ports"), ("POST", "bobs/proxy"),
        ]:  # fmt: skip
            refused = await alice.request(
                method, f"{SERVICES}{path}", json={} if method == "POST" else None
            )
            assert refused.status_code == 404, (method, path, refused.text)
        assert (await alice.get(SERVICES)).json() == []
        assert [s["service_name"] for s in (await bob.get(SERVICES)).json()] == ["bobs"]
        assert container_status(docker_engine, "bobs") == "created"

        host = await alice.post(
            SERVICES, json={"service_name": "a1", "image": IMAGE, "networks": ["host"]}
        )
        assert (host.status_code, host.json()["field"]) == (403, "networks")
        built = await alice.post(
            SERVICES, json={"service_name": "a2", "dockerfile_path": "/etc/Dockerfile"}
        )
        assert (built.status_code, built.json()["field"]) == (403, "dockerfile_path")

        await create(bob, "bobs2", image=IMAGE, start=False)
        third = await bob.post(SERVICES, json={"service_name": "bobs3", "image": IMAGE})
        assert (third.status_code, third.json()["error"]) == (403, "quota_exceeded")
        assert "TOKEN_MAX_SERVICES" in third.json()["detail"]

        assert (await bob.post(f"{SERVICES}bobs/start")).json()["status"] == "running"
        assert (await bob.delete(f"{SERVICES}bobs")).status_code == 200
        assert (await bob.delete(f"{SERVICES}bobs2")).status_code == 200


async def test_a_container_killed_behind_the_gateways_back_makes_its_proxy_say_503(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine
) -> None:
    port = free_port()
    await create(
        admin, "fragile", image=IMAGE, command=httpd(port), internal_port=port, networks=["host"]
    )
    proxy = await admin.post(f"{SERVICES}fragile/proxy", json={"hostname": "fragile.example"})
    assert proxy.status_code == 201, proxy.text
    await through_gateway(docker_gateway, "fragile.example", 200)
    front = {"hostname": "front.example", "target_url": f"http://127.0.0.1:{free_port()}"}
    assert (await admin.post("/api/v1/proxy/targets/", json=front)).status_code == 201
    route = {"path_pattern": "/index.html", "target_type": "service", "target_value": "fragile"}
    created_route = await admin.post("/api/v1/routes/", json=route)
    assert created_route.status_code == 201, created_route.text
    await through_gateway(docker_gateway, "front.example", 200)  # the route to the service

    docker_engine.docker("kill", "fragile")
    down = await through_gateway(docker_gateway, "fragile.example", 503)
    assert down.json() == {
        "error": "service_down",
        "detail": "the service 'fragile' is down: its container is not running",
    }
    routed = await through_gateway(docker_gateway, "front.example", 503)
    assert routed.json()["error"] == "service_down"
    assert (await admin.get(f"{SERVICES}fragile")).json()["status"] == "exited"

    docker_engine.docker("start", "fragile")  # behind its back again: the events say so
    await through_gateway(docker_gateway, "fragile.example", 200)
    docker_engine.docker("rm", "-f", "fragile")
    gone = await through_gateway(docker_gateway, "fragile.example", 503)
    assert gone.json()["error"] == "service_down"
    route_id = created_route.json()["route_id"]
    assert (await admin.delete(f"/api/v1/routes/{route_id}")).status_code == 200
    restarted = await admin.post(f"{SERVICES}fragile/restart")
    assert restarted.status_code == 404, restarted.text  # no container left to restart
    assert (
        await admin.delete(f"{SERVICES}fragile", params={"delete_proxy": "true"})
    ).status_code == 200


async def test_a_container_removed_right_after_its_inspect_reads_as_inspected(
    docker_engine: Engine,
) -> None:
    """A container's state is what its inspect said, even when the container is removed before
    the event loop takes the answer: python-on-whales re-inspects an object read more than 10 ms
    after its inspect, and that re-inspect on the loop met the removed container as a raw
    NoSuchContainer. The Docker events follower died of it (and the gateway, cutting an admin
    request off: 'Server disconnected') when a republish replaced a container under load."""
    labels = ("--label", "oauthproxy.managed=true", "--label", "oauthproxy.service=vanishing")
    docker_engine.docker("run", "-d", "--name", "vanishing", *labels, IMAGE, "sleep", "600")
    engine = DockerEngine(docker_engine.host, "")
    read: list[ContainerState] = []

    async def read_state() -> None:
        read.append(await engine.state("vanishing"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_state)
        await trio.testing.wait_all_tasks_blocked()  # the inspect runs in its worker thread
        remove_once_answered(docker_engine, "vanishing")
    assert [(state.name, state.status) for state in read] == [("vanishing", "running")]


def remove_once_answered(engine: Engine, name: str) -> None:
    """Holding the event loop (a blocking call, no checkpoint): wait until a worker thread has
    handed its answer to the loop, remove container `name`, and let that answer age past
    python-on-whales' 10 ms cache before the loop takes it."""
    deadline = time.monotonic() + 60
    while trio.lowlevel.current_statistics().run_sync_soon_queue_size == 0:
        assert time.monotonic() < deadline, "the inspect never answered"
        time.sleep(0.001)
    engine.docker("rm", "-f", name)
    time.sleep(0.05)


async def test_cleanup_removes_containers_without_records_and_records_without_containers(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine, storage: Storage
) -> None:
    docker_engine.docker(
        "create", "--name", "stray", "--label", "oauthproxy.managed=true",
        "--label", "oauthproxy.service=stray", IMAGE,
    )  # fmt: skip
    docker_engine.docker("create", "--name", "not-ours", IMAGE)
    await create(admin, "kept", image=IMAGE, start=False)
    await storage.docker_services.put(DockerService(service_name="forgotten", image=IMAGE))
    async with as_new_token(admin, docker_gateway, "carol") as carol:
        assert (await carol.post(f"{SERVICES}cleanup")).status_code == 403

    cleaned = await admin.post(f"{SERVICES}cleanup")
    assert cleaned.json() == {
        "removed_containers": ["stray"],
        "removed_records": ["forgotten"],
        "removed_networks": [],
    }
    names = docker_engine.docker("ps", "-a", "--format", "{{.Names}}").split()
    assert "stray" not in names and {"not-ours", "kept"} <= set(names)
    assert await storage.redis.exists([keys.docker_service("forgotten")]) == 0
    docker_engine.docker("rm", "-f", "not-ours")
    assert (await admin.delete(f"{SERVICES}kept")).status_code == 200


async def test_logs_follow_streams_new_lines_once_each(
    admin: httpx.AsyncClient, docker_engine: Engine
) -> None:
    ticking = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"
    await create(admin, "ticker", image=IMAGE, command=["sh", "-c", ticking])
    seen: list[str] = []
    params = {"follow": "true", "lines": "1"}
    async with admin.stream("GET", f"{SERVICES}ticker/logs", params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        async for line in response.aiter_lines():
            seen.append(line)
            if len(seen) == 25:
                break
    numbers = [int(line.removeprefix("tick ")) for line in seen]
    assert numbers == list(range(numbers[0], numbers[0] + 25))  # in order, none twice or lost
    assert (await admin.delete(f"{SERVICES}ticker")).status_code == 200


async def test_a_token_follows_a_bounded_number_of_service_logs_at_once(
    admin: httpx.AsyncClient,
) -> None:
    """Each followed log polls the engine (a `docker logs` run on a worker thread that every
    engine call and name lookup of the API shares) twice a second until its client leaves, so a
    token that opened follows by the hundred held the engine and the API's threads for everyone.
    A token holds at most DOCKER_LOG_FOLLOWS_PER_TOKEN at once: one more is a 429, and a slot is
    free again once its stream ends."""
    await create(admin, "chatty", image=IMAGE, command=["sh", "-c", "echo hi; sleep 3600"])
    url, params = f"{SERVICES}chatty/logs", {"follow": "true", "lines": "1"}
    following = []  # each stream's lines: a dropped line iterator closes its connection
    async with contextlib.AsyncExitStack() as streams:
        for _ in range(DOCKER_LOG_FOLLOWS_PER_TOKEN):
            response = await streams.enter_async_context(admin.stream("GET", url, params=params))
            assert response.status_code == 200
            following.append(response.aiter_lines())
            assert await anext(following[-1]) == "hi"  # its slot is taken
        async with admin.stream("GET", url, params=params) as refused:
            assert refused.status_code == 429  # before: a 200 stream, the fifth of many
            assert json.loads(await refused.aread())["error"] == "too_many_follows"
    async with admin.stream("GET", url, params=params) as again:
        assert again.status_code == 200
    assert (await admin.delete(f"{SERVICES}chatty")).status_code == 200


async def test_a_followed_service_log_ends_when_its_token_is_suspended(
    admin: httpx.AsyncClient, docker_gateway: Ready
) -> None:
    """Suspension is how the admin shuts a leaked token without deleting what it owns. A thief
    who opened `GET /services/{name}/logs?follow=true` with the token before the admin noticed
    kept reading the container's output (its secrets, its users' requests) for as long as it
    liked: the token was checked once, when the stream opened. The caller is authenticated
    again every few seconds (RECHECK_SECONDS) and the stream ends once it is not."""
    from oauthproxy.api.auth import RECHECK_SECONDS

    ticking = "i=0; while true; do echo secret-line $i; i=$((i+1)); sleep 0.2; done"
    async with as_new_token(admin, docker_gateway, "leaky") as thief:
        thief.timeout = httpx.Timeout(90)
        await create(thief, "leakysvc", image=IMAGE, command=["sh", "-c", ticking])
        params = {"follow": "true", "lines": "1"}
        after: list[str] = []
        async with thief.stream("GET", f"{SERVICES}leakysvc/logs", params=params) as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            await anext(lines)
            suspended = await admin.put("/api/v1/tokens/leaky/suspended", json={})
            assert suspended.status_code == 200, suspended.text
            assert (await thief.get("/api/v1/tokens/info")).status_code == 401
            noticed = trio.current_time() + RECHECK_SECONDS + 1  # time for the gateway to notice
            with trio.move_on_after(RECHECK_SECONDS + 5) as reading:
                async for line in lines:
                    if trio.current_time() > noticed:
                        after.append(line)
    assert (await admin.delete(f"{SERVICES}leakysvc")).status_code == 200
    assert not after, f"after the suspension the thief still read {len(after)} lines: {after[:2]}"
    assert not reading.cancelled_caught, "the stream stayed open"


async def test_deleting_a_token_removes_its_containers(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine, storage: Storage
) -> None:
    async with as_new_token(admin, docker_gateway, "dave") as dave:
        await create(dave, "daves", image=IMAGE, start=False)
    deleted = await admin.delete("/api/v1/tokens/dave")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted"]["services"] == ["daves"]
    assert not container_exists(docker_engine, "daves")
    assert await storage.redis.exists([keys.docker_service("daves")]) == 0


async def test_changing_the_environment_recreates_the_container_with_the_ports_held_now(
    admin: httpx.AsyncClient, docker_engine: Engine
) -> None:
    await create(admin, "remade", image=IMAGE, command=["sleep", "300"], environment={"A": "1"})
    port = await admin.post(f"{SERVICES}remade/ports", json={"name": "web", "container": 80})
    host_port = port.json()["host_port"]
    assert port.json()["republished"] is True
    before = json.loads(docker_engine.docker("inspect", "remade"))[0]

    bad = await admin.put(f"{SERVICES}remade", json={"image": "no-such-image:never"})
    assert (bad.status_code, bad.json()["error"]) == (422, "docker_error")
    assert json.loads(docker_engine.docker("inspect", "remade"))[0]["Id"] == before["Id"]

    changed = await admin.put(f"{SERVICES}remade", json={"environment": {"A": "2"}})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["environment"], changed.json()["status"]) == ({"A": "2"}, "running")
    after = json.loads(docker_engine.docker("inspect", "remade"))[0]
    assert after["Id"] != before["Id"]
    assert "A=2" in after["Config"]["Env"]
    bindings = after["HostConfig"]["PortBindings"]
    assert bindings == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]}
    labels = await admin.put(f"{SERVICES}remade", json={"labels": {"oauthproxy.owner": "me"}})
    assert (labels.status_code, labels.json()["field"]) == (422, "labels")
    assert (await admin.delete(f"{SERVICES}remade")).status_code == 200


async def test_a_logs_answer_is_bounded_in_bytes(
    admin: httpx.AsyncClient, docker_engine: Engine
) -> None:
    """`lines` bounded the count, not the bytes: 10,000 lines of 8 KiB made an 82 MB answer,
    held in memory several times over while it was read, decoded and split. An answer holds the
    newest MAX_LOG_BYTES (1 MiB) at most, whole lines, each at most MAX_LOG_LINE characters."""
    loud = (
        "i=0; while [ $i -lt 300 ]; do head -c 8000 /dev/zero | tr '\\0' x; echo \" $i\"; "
        "i=$((i+1)); done; head -c 40000 /dev/zero | tr '\\0' y; echo; echo last; sleep 3600"
    )
    await create(admin, "loud", image=IMAGE, command=["sh", "-c", loud])

    async def written() -> list[str] | None:
        answer = await admin.get(f"{SERVICES}loud/logs", params={"lines": 10000})
        assert answer.status_code == 200, answer.text
        lines: list[str] = answer.json()["lines"]
        return lines if lines and lines[-1] == "last" else None

    lines = await eventually(written, what="the container's output written")
    assert sum(len(line) + 1 for line in lines) <= 1 << 20
    assert max(len(line) for line in lines) == 16384  # the 40,000-character line, cut
    assert lines[0].endswith(f" {300 - len(lines) + 2}")  # whole lines, the newest ones
    assert (await admin.delete(f"{SERVICES}loud")).status_code == 200


async def test_an_owners_services_share_a_memory_and_cpu_allowance(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    docker_engine: Engine,
) -> None:
    """TOKEN_MAX_DOCKER_MEMORY and TOKEN_MAX_DOCKER_CPUS bound an owner's containers together:
    a `memory_limit` of 9999g was no limit at all, on a host other owners share."""
    gateway = await serve_on(
        nursery,
        make_settings,
        docker_engine,
        token_max_services=10,
        token_max_docker_memory="1g",
        token_max_docker_cpus=2,
    )
    async with admin_of(gateway) as admin, as_new_token(admin, gateway, "carol") as carol:
        sleeper: dict[str, Any] = {"image": IMAGE, "command": ["sleep", "300"], "start": False}
        await create(carol, "c1", **sleeper, memory_limit="512m", cpu_limit=1)
        too_much: list[tuple[dict[str, Any], str]] = [
            ({"memory_limit": "9999g"}, "memory_limit"),
            ({"memory_limit": "600m"}, "memory_limit"),  # 512m + 600m > 1g
            ({"memory_limit": "256m", "cpu_limit": 1.5}, "cpu_limit"),
        ]
        for fields, field in too_much:
            refused = await carol.post(SERVICES, json={"service_name": "c2", **sleeper, **fields})
            assert (refused.status_code, refused.json()["field"]) == (403, field), refused.text
            assert refused.json()["error"] == "quota_exceeded"
            assert "TOKEN_MAX_DOCKER_" in refused.json()["detail"]
        assert not container_exists(docker_engine, "c2")
        assert await storage.docker_services.get("c2") is None

        # two at once: the allowance holds for both (one is refused)
        answers: list[httpx.Response] = []

        async def create_one(name: str) -> None:
            body = {"service_name": name, **sleeper, "memory_limit": "400m", "cpu_limit": 0.5}
            answers.append(await carol.post(SERVICES, json=body))

        async with trio.open_nursery() as racing:
            racing.start_soon(create_one, "c3")
            racing.start_soon(create_one, "c4")
        assert sorted(answer.status_code for answer in answers) == [201, 403]

        # a change of limits counts the owner's other services, not the one changed
        grown = await carol.put(f"{SERVICES}c1", json={"memory_limit": "700m"})
        assert (grown.status_code, grown.json()["field"]) == (403, "memory_limit"), grown.text
        shrunk = await carol.put(f"{SERVICES}c1", json={"memory_limit": "256m", "cpu_limit": 0.5})
        assert shrunk.status_code == 200, shrunk.text
        inspected = docker_engine.docker(
            "inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}", "c1"
        )
        assert inspected == f"{256 * 1024**2} {500_000_000}"
        await create(carol, "c5", **sleeper, memory_limit="300m", cpu_limit=1)

        # the admin's own services are not counted against anyone
        await create(admin, "admins", **sleeper, memory_limit="2g", cpu_limit=2)
        for name in ("c1", "c3", "c4", "c5", "admins"):
            if await storage.docker_services.get(name) is not None:
                assert (await admin.delete(f"{SERVICES}{name}")).status_code == 200


@pytest.mark.parametrize("image", ["127.1:5000/probe:1", "localhost.:5000/probe", "0177.1/x:1"])
async def test_an_owners_image_comes_from_no_registry_that_resolves_to_this_host(
    admin: httpx.AsyncClient,
    docker_gateway: Ready,
    docker_engine: Engine,
    storage: Storage,
    image: str,
) -> None:
    """The engine speaks plain HTTP to a loopback registry, on a path the owner chooses: names
    that are no IP literal but resolve to one (`127.1`, `localhost.`, `0177.1`) got past the
    literal check. Refused before any pull, on create and on change."""
    async with as_new_token(admin, docker_gateway, "dave") as dave:
        await create(dave, "d0", image=IMAGE, command=["sleep", "300"], start=False)
        created = await dave.post(SERVICES, json={"service_name": "d1", "image": image})
        changed = await dave.put(f"{SERVICES}d0", json={"image": image})
        for refused in (created, changed):
            assert (refused.status_code, refused.json()["field"]) == (403, "image"), refused.text
            assert "resolves to 127." in refused.json()["detail"]
        assert await storage.docker_services.get("d1") is None
        d0 = await storage.docker_services.get("d0")
        assert d0 is not None and d0.image == IMAGE
        assert (await dave.delete(f"{SERVICES}d0")).status_code == 200


async def test_an_oversized_environment_is_a_422_and_the_service_keeps_running(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine
) -> None:
    """Each environment value goes on the docker CLI's command line: one of 200 KiB was past
    the kernel's limit for an argument (E2BIG), a 500; and in a change, the old container was
    removed before the new one failed, leaving the service without one. Now values are at most
    8 KiB and the three lists 256 Ki characters together: a 422 naming the field, and the
    service runs on as it was."""
    async with as_new_token(admin, docker_gateway, "envy") as envy:
        envy.timeout = httpx.Timeout(90)
        await create(envy, "envy", image=IMAGE, command=["sleep", "600"])
        huge = {"service_name": "envy2", "image": IMAGE, "environment": {"BIG": "x" * 200_000}}
        refused = await envy.post(SERVICES, json=huge)
        assert refused.status_code == 422, refused.text
        assert "environment" in refused.text
        many = {f"V{n}": "x" * 8_000 for n in range(40)}  # each allowed, not all together
        for change in ({"environment": {"BIG": "x" * 200_000}}, {"environment": many}):
            refused = await envy.put(f"{SERVICES}envy", json=change)
            assert refused.status_code == 422, refused.text
        assert not container_exists(docker_engine, "envy2")
        assert container_status(docker_engine, "envy") == "running"
        assert (await envy.delete(f"{SERVICES}envy")).status_code == 200


async def test_an_engine_refusal_does_not_show_the_gateways_docker_command(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine
) -> None:
    """The docker CLI's exception text begins with the whole command the gateway ran: with
    DOCKER_HOST (the engine's socket on the gateway's host) and DOCKER_API_VERSION. An owner
    read it in a 422. The answer now holds what the engine said, and the service runs on."""
    async with as_new_token(admin, docker_gateway, "img") as img:
        img.timeout = httpx.Timeout(90)
        await create(img, "img1", image=IMAGE, command=["sleep", "600"])
        refused = await img.put(f"{SERVICES}img1", json={"image": "oauthproxy-test/none:404"})
        assert refused.status_code == 422, refused.text
        assert "no such image" in refused.json()["detail"].lower()
        for leak in ("docker.sock", "--host", "command executed", "DOCKER_API_VERSION"):
            assert leak not in refused.text, refused.text
        assert container_status(docker_engine, "img1") == "running"
        assert (await img.delete(f"{SERVICES}img1")).status_code == 200


async def test_a_service_name_in_another_case_takes_nobody_elses(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine
) -> None:
    """A network's resolver answers names without regard to case, and the gateway reaches a
    service by its name: an owner's `WEB1` beside another owner's `web1` took a share of the
    traffic of web1's proxy (an attack hunt). Names are lower case now (422), and one whose
    container has the name in another case (made before that rule) is a 409."""
    async with as_new_token(admin, docker_gateway, "alice") as alice:
        upper = await alice.post(SERVICES, json={"service_name": "WEB1", "image": IMAGE})
        assert upper.status_code == 422, upper.text
        assert "service_name" in upper.text
        docker_engine.docker(
            "create", "--name", "Legacy1", "--label", "oauthproxy.managed=true", IMAGE, "true"
        )
        try:
            taken = await alice.post(SERVICES, json={"service_name": "legacy1", "image": IMAGE})
            assert (taken.status_code, taken.json()["field"]) == (409, "service_name"), taken.text
            assert "Legacy1" in taken.json()["detail"]
        finally:
            docker_engine.docker("rm", "-f", "Legacy1")


async def test_a_containers_output_is_bounded_on_the_hosts_disk(
    admin: httpx.AsyncClient, docker_gateway: Ready, docker_engine: Engine
) -> None:
    """The engine kept all of a container's output: an owner's container printing without end
    wrote ~64 MiB in 2 s onto the disk Redis and every tenant share (an attack hunt). A
    container's log now rotates at 10 MB, 3 files."""
    async with as_new_token(admin, docker_gateway, "carol") as carol:
        await create(
            carol, "chatty", image=IMAGE, cpu_limit=0.5, memory_limit="64m",
            command=["busybox", "yes", "x" * 1000],
        )  # fmt: skip
        inspected = json.loads(docker_engine.docker("inspect", "chatty"))[0]
        assert inspected["HostConfig"]["LogConfig"]["Config"] == {
            "max-size": "10m",
            "max-file": "3",
        }
        log_path = trio.Path(inspected["LogPath"])
        largest = 0
        with trio.move_on_after(6):  # (unbounded, it passed 12 MB within 1 s)
            while largest <= 12_000_000:
                await trio.sleep(0.25)
                try:  # (absent before the first line, and for a moment at each rotation)
                    largest = max(largest, (await log_path.stat()).st_size)
                except FileNotFoundError:
                    continue
        assert (await carol.post(f"{SERVICES}chatty/stop")).status_code == 200
        assert 0 < largest <= 12_000_000
        assert (await carol.delete(f"{SERVICES}chatty")).status_code == 200
