"""`/health` tells the truth about Redis, and a lost Redis is a 503, never a 500."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
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
