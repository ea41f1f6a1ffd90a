"""`oauthproxy run` as a user starts it: embedded Redis, persistence, clean signals, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from oauthproxy.settings import Settings
from oauthproxy.storage.embedded import server_binary
from tests.conftest import free_port, venv_bin
from tests.eventually import eventually

START_TIMEOUT = 60


@dataclass
class RunningGateway:
    process: trio.Process
    api_url: str
    banner: str
    data_dir: Path

    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def redis_pid(self) -> int:
        return int((self.data_dir / "valkey.pid").read_text().strip())


def _environment(data_dir: Path) -> dict[str, str]:
    settings = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings}
    env.update(
        OAUTHPROXY_DATA_DIR=str(data_dir),
        API_PORT=str(free_port()),
        HTTP_PORT=str(free_port()),
        HTTPS_PORT=str(free_port()),
        PROXY_PROTOCOL_PORT=str(free_port()),
        SHUTDOWN_GRACE_SECONDS="3",
    )
    return env


@asynccontextmanager
async def started_gateway(
    data_dir: Path, cwd: Path, env: dict[str, str] | None = None
) -> AsyncIterator[RunningGateway]:
    process = await trio.lowlevel.open_process(
        [venv_bin("oauthproxy"), "run"],
        env=env or _environment(data_dir),
        cwd=str(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        output = b""
        with trio.fail_after(START_TIMEOUT):
            while b"try " not in output:
                chunk = await process.stdout.receive_some()
                assert chunk, f"the gateway exited before it was ready: {output.decode()}"
                output += chunk
        banner = output.decode()
        api_url = banner.split("admin API", 1)[1].split()[0]
        yield RunningGateway(process, api_url, banner, data_dir)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "(Z)" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return "(" + Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] + ")"
    except OSError:
        return "(gone)"


async def _stop(gateway: RunningGateway, signum: signal.Signals) -> int:
    gateway.process.send_signal(signum)
    with trio.fail_after(30):
        return await gateway.process.wait()


async def test_embedded_redis_persists_and_stops_with_the_gateway(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with started_gateway(data_dir, tmp_path) as first:
        assert "redis          embedded" in first.banner
        assert "generated on this first run" in first.banner
        token = first.admin_token()
        assert token in first.banner
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=first.api_url, headers=headers) as api:
            health = (await api.get("/health")).json()
            assert health["components"]["redis"]["embedded"] is True
            dashboard = first.banner.split("dashboard", 1)[1].split()[0]
            assert dashboard == f"{first.api_url}/dashboard/"
            assert "<title>oauthproxy dashboard</title>" in (await api.get(dashboard)).text
            created = await api.post("/api/v1/tokens/generate", json={"name": "survivor"})
            assert created.status_code == 201
        redis_pid = first.redis_pid()
        assert _alive(redis_pid)
        assert await _stop(first, signal.SIGTERM) == 0
        assert not _alive(redis_pid), "the embedded Redis outlived the gateway"

    async with started_gateway(data_dir, tmp_path) as second:
        assert "generated on this first run" not in second.banner
        assert token not in second.banner
        assert second.admin_token() == token
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=second.api_url, headers=headers) as api:
            survivor = await api.get("/api/v1/tokens/survivor")
            assert survivor.status_code == 200
        redis_pid = second.redis_pid()
        assert await _stop(second, signal.SIGINT) == 0
        assert not _alive(redis_pid), "the embedded Redis outlived the gateway"


async def test_a_killed_gateway_takes_its_redis_along(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with started_gateway(data_dir, tmp_path) as killed:
        redis_pid = killed.redis_pid()
        killed.process.kill()
        await killed.process.wait()
    await until_gone(redis_pid)  # the parent-death signal, not the next start, stopped it


async def test_a_server_left_behind_is_taken_over(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with started_gateway(data_dir, tmp_path) as first:
        headers = {"Authorization": f"Bearer {first.admin_token()}"}
        async with httpx.AsyncClient(base_url=first.api_url, headers=headers) as api:
            assert (await api.post("/api/v1/tokens/generate", json={"name": "kept"})).is_success
        assert await _stop(first, signal.SIGTERM) == 0
    # a server no gateway stops on its own (as an older gateway, killed, left it behind)
    leftover = await trio.lowlevel.open_process(
        [str(server_binary()), str(data_dir / "valkey.conf")],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        async def leftover_running() -> bool:  # another process: nothing to wait on but polling
            return _pidfile_names(data_dir, leftover.pid)

        await eventually(leftover_running, what="the leftover's pidfile", within=START_TIMEOUT)
        async with started_gateway(data_dir, tmp_path) as successor:
            assert not _alive(leftover.pid)
            headers = {"Authorization": f"Bearer {successor.admin_token()}"}
            async with httpx.AsyncClient(base_url=successor.api_url, headers=headers) as api:
                assert (await api.get("/api/v1/tokens/kept")).status_code == 200
            redis_pid = successor.redis_pid()
            assert await _stop(successor, signal.SIGTERM) == 0
            assert not _alive(redis_pid)
    finally:
        leftover.kill()
        await leftover.wait()


def _pidfile_names(data_dir: Path, pid: int) -> bool:
    try:
        return int((data_dir / "valkey.pid").read_text().strip()) == pid
    except (OSError, ValueError):
        return False


async def until_gone(pid: int) -> None:
    async def gone() -> bool:  # another process: nothing to wait on but polling
        return not _alive(pid)

    await eventually(gone, what=f"process {pid} gone", within=START_TIMEOUT)


async def test_a_killed_gateway_serves_every_proxy_again_after_restart(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    import functools

    from tests.backend import serve_backend

    backend: int = await nursery.start(functools.partial(serve_backend, "kept"))
    data_dir = tmp_path / "data"
    env = _environment(data_dir)  # the same ports, so the same replica, both times
    hostnames = [f"p{number}.example.com" for number in range(3)]
    async with started_gateway(data_dir, tmp_path, env) as first:
        headers = {"Authorization": f"Bearer {first.admin_token()}"}
        async with httpx.AsyncClient(base_url=first.api_url, headers=headers) as api:
            for hostname in hostnames:
                body = {"hostname": hostname, "target_url": f"http://127.0.0.1:{backend}"}
                assert (await api.post("/api/v1/proxy/targets/", json=body)).status_code == 201
        await _all_served(env["HTTP_PORT"], hostnames)
        first.process.kill()
        await first.process.wait()

    async with started_gateway(data_dir, tmp_path, env) as second:
        await _all_served(env["HTTP_PORT"], hostnames)
        assert await _stop(second, signal.SIGTERM) == 0


async def _all_served(http_port: str, hostnames: list[str]) -> None:
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", limits=limits) as c:

        async def all_served() -> bool:
            for hostname in hostnames:
                if (await c.get("/echo", headers={"Host": hostname})).status_code != 200:
                    return False
            return True

        await eventually(all_served, what=f"{hostnames} served", within=15)
