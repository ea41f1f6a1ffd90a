"""`/health` tells the truth about Redis, and a lost Redis is a 503, never a 500."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio

from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from tests.conftest import free_port, redis_command, wait_for_port


async def _start_redis(port: int, workdir: Path) -> trio.Process:
    process = await trio.lowlevel.open_process(
        redis_command(port, workdir), stdout=subprocess.DEVNULL
    )
    await wait_for_port(port)
    return process


async def test_lost_redis_makes_health_503_and_api_503(
    nursery: trio.Nursery, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    port = free_port()
    redis = await _start_redis(port, tmp_path)
    settings = make_settings(redis_url=f"redis://127.0.0.1:{port}/0")
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    headers = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=headers, timeout=30) as api:
        healthy = await api.get("/health")
        assert healthy.status_code == 200
        assert healthy.json()["components"]["redis"]["status"] == "ok"

        redis.terminate()
        await redis.wait()

        unhealthy = await api.get("/health")
        assert unhealthy.status_code == 503
        body = unhealthy.json()
        assert body["status"] == "unhealthy"
        assert body["components"]["redis"]["status"] == "error"

        listing = await api.get("/api/v1/tokens/")
        assert listing.status_code == 503
        assert listing.json() == {
            "error": "storage_unavailable",
            "detail": "Redis is not reachable",
        }


async def test_anonymous_health_checks_start_no_process_each(
    gateway: Ready, anonymous: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `GET /health` asked the Docker engine through the docker CLI: an anonymous client
    made the gateway start a process (tens of milliseconds of CPU) per request. The engine's
    answer is now shared for a few seconds; and where the engine is (DOCKER_HOST, a path or an
    address on the host) is shown to the admin only."""
    real = shutil.which("docker")
    assert real is not None, "the docker CLI is installed (.ci/run: docker.io)"
    calls = tmp_path / "docker-calls"
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    counting = wrappers / "docker"  # the real CLI, counted
    counting.write_text(f'#!/bin/sh\necho run >> {calls}\nexec {real} "$@"\n')
    counting.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrappers}:{os.environ['PATH']}")
    answers = [await anonymous.get("/health") for _ in range(50)]
    runs = len(calls.read_text().splitlines()) if calls.exists() else 0
    assert 1 <= runs <= 3, f"50 anonymous /health calls ran the docker CLI {runs} times"
    docker = answers[-1].json()["components"]["docker"]
    assert "docker_host" not in docker, docker
    assert "DOCKER_HOST" not in answers[-1].text and ".sock" not in answers[-1].text, docker
    admin = {"Authorization": f"Bearer {gateway.admin_token.secret}"}
    seen = (await anonymous.get("/health", headers=admin)).json()["components"]["docker"]
    assert "docker_host" in seen, seen
