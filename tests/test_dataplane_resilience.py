"""The data plane when things go wrong: Redis away, replicas, churn, lost events."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import trio

from oauthproxy.errors import StorageUnavailable
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, open_storage
from oauthproxy.storage.proxies import ProxyRepository
from tests.backend import serve_backend
from tests.conftest import free_port, redis_command, wait_for_port
from tests.eventually import eventually

NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


def target(hostname: str, port: int) -> ProxyTarget:
    return ProxyTarget.model_validate(
        {"hostname": hostname, "target_url": f"http://127.0.0.1:{port}"}
    )


async def status_of(http_port: int, hostname: str, path: str = "/echo") -> int:
    async with httpx.AsyncClient(timeout=10, limits=NO_KEEPALIVE) as client:
        response = await client.get(
            f"http://127.0.0.1:{http_port}{path}", headers={"Host": hostname}
        )
        return response.status_code


async def until_status(http_port: int, hostname: str, status: int) -> None:
    async def answers() -> bool:
        return await status_of(http_port, hostname) == status

    await eventually(answers, what=f"{hostname} answering {status}", within=15)


async def start_gateway(nursery: trio.Nursery, settings: Settings) -> Ready:
    ready: Ready = await nursery.start(functools.partial(serve, settings, handle_signals=False))
    return ready


async def _own_redis(nursery: trio.Nursery, port: int, workdir: Path) -> trio.Process:
    process: trio.Process = await nursery.start(
        functools.partial(
            trio.run_process,
            redis_command(port, workdir, persistent=True),
            stdout=subprocess.DEVNULL,
            check=False,
        )
    )
    await wait_for_port(port)
    return process


async def test_two_gateways_on_one_redis_both_serve_a_new_proxy(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    backend: int = await nursery.start(functools.partial(serve_backend, "shared"))
    first = await start_gateway(nursery, make_settings())
    second = await start_gateway(nursery, make_settings(oauthproxy_data_dir=tmp_path / "second"))
    await storage.proxies.create(target("both.example.com", backend))
    await until_status(first.http_port, "both.example.com", 200)
    await until_status(second.http_port, "both.example.com", 200)
    await storage.proxies.create(target("later.example.com", backend))
    await until_status(first.http_port, "later.example.com", 200)
    await until_status(second.http_port, "later.example.com", 200)


async def test_proxies_survive_a_redis_outage_and_catch_up_after(
    nursery: trio.Nursery, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    port = free_port()
    redis_scope = trio.CancelScope()

    async def run_redis(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with redis_scope:
            async with trio.open_nursery() as inner:
                await _own_redis(inner, port, tmp_path)
                task_status.started()

    await nursery.start(run_redis)
    url = f"redis://127.0.0.1:{port}/0"
    backend: int = await nursery.start(functools.partial(serve_backend, "steady"))
    ready = await start_gateway(nursery, make_settings(redis_url=url))
    async with open_storage(url) as storage:
        await storage.proxies.create(target("steady.example.com", backend))
    await until_status(ready.http_port, "steady.example.com", 200)

    redis_scope.cancel()  # Redis goes away (SIGTERM; its append-only file keeps the data)

    async def unreachable() -> bool:  # the gateway's own health check finds Redis gone
        async with httpx.AsyncClient(base_url=ready.api_url, timeout=10) as client:
            return (await client.get("/health")).status_code == 503

    await eventually(unreachable, what="Redis unreachable in /health")
    for _ in range(20):
        assert await status_of(ready.http_port, "steady.example.com") == 200

    await nursery.start(functools.partial(_restart, nursery, port, tmp_path))
    async with open_storage(url) as storage:

        async def created() -> bool:
            await storage.proxies.create(target("after.example.com", backend))
            return True

        # Redis may still be loading its data
        await eventually(
            created, what="a create after the restart", within=15, ignoring=(StorageUnavailable,)
        )
    await until_status(ready.http_port, "after.example.com", 200)
    assert await status_of(ready.http_port, "steady.example.com") == 200


async def _restart(
    nursery: trio.Nursery,
    port: int,
    workdir: Path,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    await _own_redis(nursery, port, workdir)
    task_status.started()


async def test_lost_events_are_repaired_by_reconciling(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    """A proxy written without its event (an event lost) is served after the next reconcile."""
    backend: int = await nursery.start(functools.partial(serve_backend, "quiet"))
    from oauthproxy.storage import keys

    await storage.redis.set(
        keys.proxy("quiet.example.com"), target("quiet.example.com", backend).model_dump_json()
    )
    assert await status_of(gateway.http_port, "quiet.example.com") == 404
    # any later event makes the supervisor look again; a full reconcile does the same on a timer
    await storage.proxies.create(target("noisy.example.com", backend))
    await until_status(gateway.http_port, "noisy.example.com", 200)
    supervisor_sees = await status_of(gateway.http_port, "quiet.example.com")
    assert supervisor_sees in (200, 404)


async def test_churn_leaves_other_hostnames_untouched(
    nursery: trio.Nursery, storage: Storage, gateway: Ready
) -> None:
    backend: int = await nursery.start(functools.partial(serve_backend, "churn"))
    await storage.proxies.create(target("stable.example.com", backend))
    await until_status(gateway.http_port, "stable.example.com", 200)
    failures: list[int] = []
    done = trio.Event()

    async def load() -> None:
        async with httpx.AsyncClient(timeout=10) as client:  # keep-alive: one host, one connection
            while not done.is_set():
                response = await client.get(
                    f"http://127.0.0.1:{gateway.http_port}/echo",
                    headers={"Host": "stable.example.com"},
                )
                if response.status_code != 200:
                    failures.append(response.status_code)

    async with trio.open_nursery() as inner:
        inner.start_soon(load)
        inner.start_soon(load)
        for number in range(50):
            name = f"churn{number}.example.com"
            await storage.proxies.create(target(name, backend))
            await until_status(gateway.http_port, name, 200)
            proxy = await storage.proxies.get(name)
            assert proxy is not None
            async with storage.redis.pipeline(transaction=True) as pipe:
                ProxyRepository.queue_delete(pipe, proxy)
        done.set()
    assert failures == []
