"""The data plane's own Redis commands while it answers a request (an ACME challenge's key
authorization, a browser login's start and callback) wait at most API_REDIS_TIMEOUT: a stalled
Redis is a 503 that says so, not a request held until its connection times out; a Redis that is
gone is a 503 too, not a connection closed without an answer."""

from __future__ import annotations

import functools
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.settings import Settings
from oauthproxy.storage import open_storage
from tests.backend import serve_backend
from tests.conftest import free_port, redis_command, wait_for_port
from tests.eventually import eventually
from tests.github_standin import GitHubStandIn
from tests.oauth_helpers import github, start_gateway

__all__ = ["github"]  # (a fixture, used by name)

APP = "stalled.example.com"


@pytest.fixture
async def redis_process(tmp_path: Path) -> AsyncIterator[tuple[trio.Process, str]]:
    """A Redis of this test's own: stopping it stalls no other test."""
    port = free_port()
    process = await trio.lowlevel.open_process(
        redis_command(port, tmp_path), stdout=subprocess.DEVNULL
    )
    try:
        await wait_for_port(port)
        yield process, f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        await process.wait()


@asynccontextmanager
async def _gateway(
    nursery: trio.Nursery,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
    url: str,
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway on `url` serving a redirect-mode proxy, and a client for that proxy."""
    backend: int = await nursery.start(functools.partial(serve_backend, "web"))
    gateway = await start_gateway(
        nursery,
        make_settings,
        github,
        redis_url=url,
        api_redis_timeout=0.5,
        oauth_anonymous_rate_limit=1000,
    )
    async with open_storage(url) as storage:
        await storage.proxies.create(
            ProxyTarget.model_validate(
                {"hostname": APP, "target_url": f"http://127.0.0.1:{backend}",
                 "auth_enabled": True, "auth_mode": "redirect",
                 "auth_required_users": ["alice"]}
            )
        )  # fmt: skip
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.http_port}",
        headers={"Host": APP, "Accept": "text/html, application/json"},
        timeout=60,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as http:

        async def known() -> bool:
            return (await http.get("/page")).status_code == 302

        await eventually(known, what=f"{APP} served")
        yield http


def _assert_unavailable(response: httpx.Response, error: str) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == error
    assert "traceback" not in response.text.lower()


async def test_a_stalled_redis_is_a_503_for_challenges_and_logins(
    nursery: trio.Nursery,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
    redis_process: tuple[trio.Process, str],
) -> None:
    redis, url = redis_process
    async with _gateway(nursery, make_settings, github, url) as http:
        redis.send_signal(signal.SIGSTOP)  # connected, never answering
        try:
            with trio.fail_after(20):  # (the first-request and request timeouts are longer)
                challenge = await http.get("/.well-known/acme-challenge/some-token")
                login = await http.get("/page")
                callback = await http.get("/.oauthproxy/callback?state=s&code=c")
        finally:
            redis.send_signal(signal.SIGCONT)
        for answer in (challenge, login, callback):
            _assert_unavailable(answer, "storage_timeout")
            assert "API_REDIS_TIMEOUT" in answer.json()["detail"]
        # and the connections the stalled commands used serve again
        assert (await http.get("/.well-known/acme-challenge/some-token")).status_code == 404
        assert (await http.get("/page")).status_code == 302


async def test_a_redis_that_is_gone_is_a_503_for_logins(
    nursery: trio.Nursery,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
    redis_process: tuple[trio.Process, str],
) -> None:
    redis, url = redis_process
    async with _gateway(nursery, make_settings, github, url) as http:
        redis.kill()
        await redis.wait()
        with trio.fail_after(20):
            login = await http.get("/page")
            callback = await http.get("/.oauthproxy/callback?state=s&code=c")
            challenge = await http.get("/.well-known/acme-challenge/some-token")
        _assert_unavailable(login, "storage_unavailable")
        _assert_unavailable(callback, "storage_unavailable")
        _assert_unavailable(challenge, "storage_unavailable")
