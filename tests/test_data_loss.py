"""A Redis that comes back empty is detected, reported and never applied until an operator says so.

Against a real Redis (the embedded valkey) without persistence, restarted on the same port: the
gateway keeps serving what it served, `/health` says 503 `data_loss`, the admin token works again,
and after a restore `POST /api/v1/redis/accept` makes Redis the truth again.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio

from oauthproxy.condition import GatewayCondition
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, keys, open_storage
from oauthproxy.storage.epoch import EpochRepository
from oauthproxy.supervisor.continuity import Continuity, Verdict
from tests.backend import serve_backend
from tests.conftest import free_port, redis_command, wait_for_port
from tests.eventually import eventually
from tests.test_cli_tokens import Cli, cli

__all__ = ["cli"]

NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


@asynccontextmanager
async def empty_redis(port: int, workdir: Path) -> AsyncIterator[trio.Process]:
    """A Redis without persistence on `port`: every start is an empty one."""
    process = await trio.lowlevel.open_process(
        redis_command(port, workdir), stdout=subprocess.DEVNULL
    )
    try:
        await wait_for_port(port)
        yield process
    finally:
        process.kill()
        await process.wait()


async def status_of(http_port: int, hostname: str) -> int:
    async with httpx.AsyncClient(timeout=10, limits=NO_KEEPALIVE) as client:
        url = f"http://127.0.0.1:{http_port}/echo"
        response = await client.get(url, headers={"Host": hostname})
        return response.status_code


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll a real system (another process) until `check()` is true."""
    await eventually(check, what=getattr(check, "__name__", repr(check)), within=20)


async def serves(http_port: int, hostname: str, status: int) -> bool:
    return await status_of(http_port, hostname) == status


async def health_is(api: httpx.AsyncClient, status: int) -> bool:
    return (await _health(api)).status_code == status


async def _health(api: httpx.AsyncClient) -> httpx.Response:
    return await api.get("/health")


async def test_redis_restarted_empty_keeps_serving_reports_and_resumes_on_accept(
    nursery: trio.Nursery, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    port = free_port()
    backend: int = await nursery.start(functools.partial(serve_backend, "kept"))
    settings = make_settings(redis_url=f"redis://127.0.0.1:{port}/0")
    async with empty_redis(port, tmp_path):
        ready: Ready = await nursery.start(functools.partial(serve, settings, handle_signals=False))
        headers = {"Authorization": f"Bearer {ready.admin_token.secret}"}
        api = httpx.AsyncClient(base_url=ready.api_url, headers=headers, timeout=30)
        async with api:
            for hostname in ("kept.example.com", "dropped.example.com"):
                body = {"hostname": hostname, "target_url": f"http://127.0.0.1:{backend}"}
                assert (await api.post("/api/v1/proxy/targets/", json=body)).status_code == 201
                await until(functools.partial(serves, ready.http_port, hostname, 200))
            assert (await _health(api)).status_code == 200

    async with (
        empty_redis(port, tmp_path),  # the same server, back without its data
        httpx.AsyncClient(base_url=ready.api_url, headers=headers, timeout=30) as api,
    ):
        await until(functools.partial(_has_problem, api, "data_loss"))
        health = await _health(api)
        assert health.status_code == 503
        assert "config-load" in health.json()["problems"]["data_loss"]
        for _ in range(20):
            assert await status_of(ready.http_port, "kept.example.com") == 200
            assert await status_of(ready.http_port, "dropped.example.com") == 200
        assert (await api.get("/api/v1/tokens/")).status_code == 200  # the admin token

        body = {"hostname": "kept.example.com", "target_url": f"http://127.0.0.1:{backend}"}
        assert (await api.post("/api/v1/proxy/targets/", json=body)).status_code == 201
        assert await status_of(ready.http_port, "dropped.example.com") == 200  # still held
        accepted = await api.post("/api/v1/redis/accept")
        assert accepted.status_code == 200
        await until(functools.partial(serves, ready.http_port, "dropped.example.com", 404))
        assert await status_of(ready.http_port, "kept.example.com") == 200
        await until(functools.partial(health_is, api, 200))


async def test_a_loss_while_the_gateway_was_down_is_reported_at_start(
    nursery: trio.Nursery, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    port = free_port()
    settings = make_settings(redis_url=f"redis://127.0.0.1:{port}/0")
    async with empty_redis(port, tmp_path), trio.open_nursery() as first:
        shutdown = trio.Event()
        ready: Ready = await first.start(
            functools.partial(serve, settings, shutdown=shutdown, handle_signals=False)
        )
        async with httpx.AsyncClient(base_url=ready.api_url) as api:
            assert (await _health(api)).status_code == 200  # a first start is no loss
        shutdown.set()

    async with empty_redis(port, tmp_path):
        again: Ready = await nursery.start(functools.partial(serve, settings, handle_signals=False))
        headers = {"Authorization": f"Bearer {again.admin_token.secret}"}
        async with httpx.AsyncClient(base_url=again.api_url, headers=headers) as api:
            health = await _health(api)
            assert health.status_code == 503
            assert "while this gateway was down" in health.json()["problems"]["data_loss"]
            async with httpx.AsyncClient(base_url=again.api_url) as anonymous:
                # the reason names the data dir's epoch file: a path on the host, the admin's
                told = (await _health(anonymous)).json()["problems"]["data_loss"]
            assert "operator must restore" in told
            assert str(settings.oauthproxy_data_dir) not in told and "epoch" not in told
            assert (await api.post("/api/v1/redis/accept")).status_code == 200
            await until(functools.partial(health_is, api, 200))


async def _has_problem(api: httpx.AsyncClient, problem: str) -> bool:
    problems: dict[str, str] = (await _health(api)).json().get("problems", {})
    return problem in problems


async def test_redis_accept_from_the_cli_writes_a_new_epoch_the_gateway_adopts(
    cli: Cli, storage: Storage, gateway: Ready
) -> None:
    before = await storage.redis.get(keys.GATEWAY_EPOCH)
    accepted = await cli.json("redis-accept")
    assert accepted["epoch"] != before
    assert await storage.redis.get(keys.GATEWAY_EPOCH) == accepted["epoch"]
    owner = (await cli.json("token", "generate", "owner"))["token"]
    refused = await cli.fails("redis-accept", env={"TOKEN": owner})
    assert "admin token" in refused
    async with httpx.AsyncClient(base_url=gateway.api_url) as api:
        await until(functools.partial(health_is, api, 200))


async def test_two_replicas_both_hold_and_one_accept_resumes_both(
    nursery: trio.Nursery, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    port = free_port()
    backend: int = await nursery.start(functools.partial(serve_backend, "shared"))
    url = f"redis://127.0.0.1:{port}/0"
    async with empty_redis(port, tmp_path):
        replicas: list[Ready] = [
            await nursery.start(
                functools.partial(
                    serve,
                    make_settings(redis_url=url, oauthproxy_data_dir=tmp_path / name),
                    handle_signals=False,
                )
            )
            for name in ("one", "two")
        ]
        first = replicas[0]
        headers = {"Authorization": f"Bearer {first.admin_token.secret}"}
        async with httpx.AsyncClient(base_url=first.api_url, headers=headers) as api:
            body = {"hostname": "both.example.com", "target_url": f"http://127.0.0.1:{backend}"}
            assert (await api.post("/api/v1/proxy/targets/", json=body)).status_code == 201
        for replica in replicas:
            await until(functools.partial(serves, replica.http_port, "both.example.com", 200))

    async with empty_redis(port, tmp_path):
        for replica in replicas:
            async with httpx.AsyncClient(base_url=replica.api_url) as api:
                await until(functools.partial(_has_problem, api, "data_loss"))
            assert await status_of(replica.http_port, "both.example.com") == 200
        late: Ready = await nursery.start(  # a replica started during the hold, remembering nothing
            functools.partial(
                serve,
                make_settings(redis_url=url, oauthproxy_data_dir=tmp_path / "late"),
                handle_signals=False,
            )
        )
        async with httpx.AsyncClient(base_url=late.api_url) as api:
            assert await _has_problem(api, "data_loss")
        replicas.append(late)
        second = replicas[1]
        headers = {"Authorization": f"Bearer {second.admin_token.secret}"}
        async with httpx.AsyncClient(base_url=second.api_url, headers=headers) as api:
            assert (await api.post("/api/v1/redis/accept")).status_code == 200
        for replica in replicas:  # Redis, empty, is the truth again: on every replica
            await until(functools.partial(serves, replica.http_port, "both.example.com", 404))
            assert await storage_key(url, keys.GATEWAY_DATA_LOSS) is None
            async with httpx.AsyncClient(base_url=replica.api_url) as api:
                await until(functools.partial(health_is, api, 200))


async def test_an_older_redis_with_data_but_no_epoch_is_adopted_not_lost(
    storage: Storage, tmp_path: Path
) -> None:
    await storage.redis.set("token:someone", "{}")  # written by a gateway before epochs existed
    condition = GatewayCondition(ready=True)
    continuity = Continuity(
        EpochRepository(storage.redis), condition, tmp_path / "redis-epoch", on_loss=_never
    )
    await continuity.start()
    assert condition.data_loss is None
    assert continuity.epoch == await storage.redis.get(keys.GATEWAY_EPOCH)
    assert (tmp_path / "redis-epoch").read_text().strip() == continuity.epoch
    assert await continuity.check() is Verdict.INTACT


async def _never() -> None:
    raise AssertionError("no loss here")


async def storage_key(url: str, key: str) -> str | None:
    async with open_storage(url) as storage:
        value = await storage.redis.get(key)
        return str(value) if value is not None else None
