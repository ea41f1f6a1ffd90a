"""The embedded Redis is supervised: SIGKILLed under load, it comes back with its data, and not
one proxied request fails meanwhile (the gateway runs as `oauthproxy run`, a real process)."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import httpx
import trio

from tests.backend import serve_backend
from tests.test_process import _alive, _environment, _stop, started_gateway, until_gone

WORKERS = 4
REQUESTS_BEFORE_AND_AFTER = 200


class Load:
    """Clients sending proxied requests on kept-alive connections until told to stop."""

    def __init__(self, http_port: str, hostname: str) -> None:
        self.url = f"http://127.0.0.1:{http_port}/echo"
        self.hostname = hostname
        self.succeeded = 0
        self.failures: list[str] = []
        self.stop = trio.Event()
        self._progress = trio.Event()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(WORKERS):
                nursery.start_soon(self._client)

    async def after(self, count: int) -> None:
        """Return once `count` more requests have succeeded."""
        target = self.succeeded + count
        while self.succeeded < target:
            await self._progress.wait()

    async def _client(self) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = await client.get(self.url, headers={"Host": self.hostname})
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    continue
                if response.status_code == 200:
                    self.succeeded += 1
                else:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
                self._progress.set()
                self._progress = trio.Event()


async def test_embedded_redis_killed_under_load_fails_no_request_and_returns_with_its_data(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    backend: int = await nursery.start(functools.partial(serve_backend, "steady"))
    data_dir = tmp_path / "data"
    env = _environment(data_dir)
    async with started_gateway(data_dir, tmp_path, env) as gateway:
        headers = {"Authorization": f"Bearer {gateway.admin_token()}"}
        async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as api:
            body = {"hostname": "steady.example.com", "target_url": f"http://127.0.0.1:{backend}"}
            assert (await api.post("/api/v1/proxy/targets/", json=body)).status_code == 201
            load = Load(env["HTTP_PORT"], "steady.example.com")
            async with trio.open_nursery() as clients:
                clients.start_soon(load.run)
                await load.after(REQUESTS_BEFORE_AND_AFTER)

                first = gateway.redis_pid()
                os.kill(first, signal.SIGKILL)
                await until_gone(first)
                await _until_redis_is_back(api, data_dir, first)

                await load.after(REQUESTS_BEFORE_AND_AFTER)
                load.stop.set()
            assert load.failures == []
            assert gateway.process.returncode is None, "the gateway exited with its Redis"
            kept = await api.get("/api/v1/proxy/targets/steady.example.com")
            assert kept.status_code == 200, "the restarted Redis lost its data"
            health = await api.get("/health")
            assert health.status_code == 200, health.text
        second = gateway.redis_pid()
        assert await _stop(gateway, signal.SIGTERM) == 0
        assert not _alive(second)


async def _until_redis_is_back(api: httpx.AsyncClient, data_dir: Path, first: int) -> None:
    """Until a new server runs (its pid in the pidfile) and the admin API reaches it again."""
    with trio.fail_after(60):
        while True:  # another process: nothing to wait on but polling
            try:
                pid = int((data_dir / "valkey.pid").read_text().strip())
            except (OSError, ValueError):
                pid = first
            if pid != first and _alive(pid) and (await api.get("/health")).status_code == 200:
                return
            await trio.sleep(0.05)
