"""Redis stopped under load: requests keep succeeding, dropped log entries are counted, and
logging resumes by itself when Redis is back (a dedicated Redis, stopped and restarted)."""

from __future__ import annotations

import functools
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from oauthproxy.errors import StorageUnavailable
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import open_storage
from tests.backend import serve_backend
from tests.conftest import free_port, redis_command, wait_for_port
from tests.eventually import eventually
from tests.test_metrics import scrape

HOST = "steady.example.com"


async def serve_redis(
    port: int, workdir: Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """A Redis with an append-only file (a restart keeps the gateway's records)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                trio.run_process,
                redis_command(port, workdir, persistent=True),
                stdout=subprocess.DEVNULL,
                check=False,
            )
        )
        await wait_for_port(port)
        task_status.started()


async def logger_state(ready: Ready) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=headers, timeout=10) as admin:
        response = await admin.get("/api/v1/logs/events")
        assert response.status_code == 200, response.text
        state: dict[str, Any] = response.json()["logger"]
        return state


async def logged_paths(ready: Ready) -> list[str]:
    headers = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=headers, timeout=10) as admin:
        response = await admin.get("/api/v1/logs/search", params={"limit": 1000})
        if response.status_code != 200:
            return []
        return [entry["request_path"] for entry in response.json()["logs"]]


async def test_redis_stopped_under_load(
    nursery: trio.Nursery, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = trio.CancelScope()

    async def first_redis(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with redis:
            await serve_redis(port, tmp_path, task_status=task_status)

    await nursery.start(first_redis)
    backend: int = await nursery.start(functools.partial(serve_backend, "steady"))
    ready: Ready = await nursery.start(
        functools.partial(serve, make_settings(redis_url=url), handle_signals=False)
    )
    async with open_storage(url) as storage:
        await storage.proxies.create(
            ProxyTarget.model_validate(
                {"hostname": HOST, "target_url": f"http://127.0.0.1:{backend}"}
            )
        )

    statuses: list[int] = []
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{ready.http_port}", headers={"Host": HOST}, timeout=10
    ) as public:

        async def warm() -> bool:
            return (await public.get("/echo/warm")).status_code == 200

        async def before_logged() -> bool:
            if "/echo/before" in await logged_paths(ready):
                return True
            await public.get("/echo/before")
            return False

        await eventually(warm, what=f"{HOST} served")
        await eventually(before_logged, what="/echo/before logged")

        redis.cancel()  # SIGTERM: Redis goes away under load
        for number in range(300):
            statuses.append((await public.get(f"/echo/during-{number}")).status_code)
            if number % 50 == 0:
                await trio.sleep(0.15)  # a few batch windows pass while Redis is away

        # /metrics answers from memory while Redis is away, and shows the drops

        async def dropping() -> bool:
            return (await scrape(ready))[("oauthproxy_request_log_dropped", ())] > 0

        await eventually(dropping, what="drops in /metrics")

        await nursery.start(serve_redis, port, tmp_path)

        async def after_logged() -> bool:
            await public.get("/echo/after")
            return "/echo/after" in await logged_paths(ready)

        await eventually(
            after_logged,
            what="/echo/after logged once Redis is back",
            within=20,
            ignoring=(httpx.HTTPError, StorageUnavailable),
        )

    assert statuses == [200] * 300
    state = await logger_state(ready)
    assert state["dropped"] > 0
    assert state["failing"] is False
    assert state["written"] > 0


async def test_redis_stalled_under_load(
    nursery: trio.Nursery, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """A Redis that stops answering (SIGSTOP) without closing: the batch waiting on it is
    dropped after the write timeout, requests never wait, and SIGCONT brings logging back."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = await trio.lowlevel.open_process(
        redis_command(port, tmp_path), stdout=subprocess.DEVNULL
    )
    try:
        await wait_for_port(port)
        backend: int = await nursery.start(functools.partial(serve_backend, "stalled"))
        ready: Ready = await nursery.start(
            functools.partial(serve, make_settings(redis_url=url), handle_signals=False)
        )
        async with open_storage(url) as storage:
            await storage.proxies.create(
                ProxyTarget.model_validate(
                    {"hostname": HOST, "target_url": f"http://127.0.0.1:{backend}"}
                )
            )
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{ready.http_port}", headers={"Host": HOST}, timeout=10
        ) as public:

            async def warm() -> bool:
                return (await public.get("/echo/warm")).status_code == 200

            await eventually(warm, what=f"{HOST} served")
            redis.send_signal(signal.SIGSTOP)
            statuses = []

            async def dropping() -> bool:
                if (await scrape(ready))[("oauthproxy_request_log_dropped", ())] > 0:
                    return True
                statuses.append((await public.get("/echo/during")).status_code)
                return False

            await eventually(dropping, what="drops in /metrics while Redis stalls", within=20)
            assert statuses and set(statuses) == {200}
            redis.send_signal(signal.SIGCONT)

            async def after_logged() -> bool:
                if "/echo/after" in await logged_paths(ready):
                    return True
                await public.get("/echo/after")
                return False

            await eventually(after_logged, what="/echo/after logged once Redis runs", within=20)
    finally:
        redis.send_signal(signal.SIGCONT)
        redis.terminate()
        with trio.CancelScope(shield=True):
            await redis.wait()
