"""`proxy-client log …` as a subprocess against a real in-process gateway and real backend."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests.backend import serve_backend
from tests.conftest import venv_bin
from tests.eventually import eventually
from tests.test_cli_tokens import Cli, cli

__all__ = ["cli"]

HOST = "cli.example.com"
CLI_WAIT = 30
"""Seconds for a wait whose every check runs `proxy-client`: a new Python process each time, which
takes seconds when the machine is busy (the suite runs in 4 processes on 2 cores)."""


@pytest.fixture
async def traffic(nursery: trio.Nursery, storage: Storage, gateway: Ready, cli: Cli) -> Cli:
    """Three requests to HOST (200, 503, 404 from the backend), logged before the test runs."""
    port: int = await nursery.start(functools.partial(serve_backend, "cli"))
    await storage.proxies.create(
        ProxyTarget.model_validate({"hostname": HOST, "target_url": f"http://127.0.0.1:{port}"})
    )
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.http_port}", headers={"Host": HOST}
    ) as public:

        async def ready() -> bool:
            return (await public.get("/echo/ready")).status_code == 200

        await eventually(ready, what=f"{HOST} served")

        async def ready_logged() -> bool:  # entries are written in order, the 200 last
            query = f"host:{HOST} path:/echo/ready status:200"
            return len(await cli.json("log", "search", "--query", query)) >= 1

        # a batch still waiting (up to 0.5 s) would land after the clear and count as traffic
        await eventually(
            ready_logged, what="the readiness request in `log search`", within=CLI_WAIT
        )
        await cli.ok("log", "clear")
        for path in ("/echo/one", "/status/503", "/status/404"):
            await public.get(path)

    async def logged() -> bool:
        query = f"host:{HOST} event:request"
        return len(await cli.json("log", "search", "--query", query)) >= 3

    await eventually(logged, what="three requests in `log search`", within=CLI_WAIT)
    return cli


async def test_search_filters_and_formats(traffic: Cli) -> None:
    cli = traffic
    found = await cli.json("log", "search", "--query", "status:503")
    assert [(e["request_path"], e["status"]) for e in found] == [("/status/503", 503)]
    assert [e["request_path"] for e in await cli.json("log", "errors")] == [
        "/status/404", "/status/503"
    ]  # fmt: skip
    assert len(await cli.json("log", "ip", "127.0.0.1", "--event", "request")) == 3
    audit = await cli.json("log", "ip", "127.0.0.1", "--event", "admin.write")
    assert [e["gateway_reason"] for e in audit] == ["DELETE /api/v1/logs"]  # the clear
    assert len(await cli.json("log", "search", "--hostname", HOST, "--event", "request")) == 3
    assert await cli.json("log", "search", "--status", "200", "--path", "/echo/one") != []
    debug = await cli.json("log", "errors-debug")
    assert [e["request_path"] for e in debug] == ["/status/503"]
    table = await cli.ok("log", "recent", "--event", "request")
    assert "/status/503" in table and "Answered By" in table
    assert "Summary: 3 requests | 2 errors" in table
    csv = await cli.ok("--format", "csv", "log", "recent", "--event", "request")
    header = csv.splitlines()[0].split(",")
    assert {"timestamp", "client_ip", "request_path", "status"} <= set(header)


async def test_stats_test_and_clear(traffic: Cli) -> None:
    cli = traffic
    stats = await cli.json("log", "stats", "--hours", "1")
    assert stats["requests"] >= 3
    assert stats["logger"]["dropped"] == 0
    assert "Request logging works." in await cli.ok("log", "test")
    scraped = await cli.ok("metrics")
    assert 'oauthproxy_requests_total{host="cli.example.com",status_class="5xx"} 1.0' in scraped
    assert "Deleted" in await cli.ok("log", "clear")
    assert await cli.json("log", "search", "--query", "host:" + HOST) == []


async def test_oauth_flow_needs_a_client_or_user(traffic: Cli) -> None:
    assert "--client-id" in await traffic.fails("log", "oauth-flow")


async def test_follow_prints_new_requests_until_interrupted(traffic: Cli, gateway: Ready) -> None:
    process = await trio.lowlevel.open_process(
        [venv_bin("proxy-client"), "log", "follow"],
        stdout=subprocess.PIPE,
        env={**os.environ, **traffic.env},
    )
    assert process.stdout is not None
    seen = b""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.http_port}", headers={"Host": HOST}
    ) as public:
        with trio.fail_after(15):
            while b"/echo/followed" not in seen:
                await public.get("/echo/followed")
                with trio.move_on_after(0.5):
                    seen += await process.stdout.receive_some()
    process.send_signal(signal.SIGINT)
    with trio.fail_after(10):
        assert await process.wait() == 0
    assert b"cli.example.com/echo/followed HTTP/1.1 200" in seen


async def test_oauth_flow_shows_a_clients_steps(cli: Cli, gateway: Ready) -> None:
    async with httpx.AsyncClient(base_url=gateway.api_url) as http:
        registered = await http.post(
            "/register",
            json={"client_name": "Flow", "redirect_uris": ["http://127.0.0.1:8765/callback"]},
        )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]

    async def some_steps() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = await cli.json("log", "oauth-flow", "--client-id", client_id)
        return found or None

    steps = await eventually(some_steps, what=f"the oauth-flow of {client_id}", within=CLI_WAIT)
    assert [(step["event"], step["request_path"]) for step in steps] == [
        ("oauth.registration", "/register")
    ]
    assert registered.json()["client_secret"] not in str(steps)


async def test_follow_prints_what_a_client_sent_as_text(traffic: Cli, gateway: Ready) -> None:
    """Anyone's request is logged, path and Host as sent, and the follower printed its lines as
    console markup: `[/x]` in a path killed `proxy-client log follow` (a markup error) and
    `[green]` forged what the operator saw. Printed as text, the follower lives on."""
    process = await trio.lowlevel.open_process(
        [venv_bin("proxy-client"), "log", "follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **traffic.env},
    )
    assert process.stdout is not None
    seen = b""
    hostile = b"/x[/x][green]forged[/green]"
    request = b"GET " + hostile + b" HTTP/1.1\r\nHost: nobody.example\r\nConnection: close\r\n\r\n"
    with trio.fail_after(20):
        while hostile not in seen and process.poll() is None:
            async with await trio.open_tcp_stream("127.0.0.1", gateway.http_port) as stream:
                await stream.send_all(request)
                assert (await stream.receive_some()).startswith(b"HTTP/1.1 404")
            with trio.move_on_after(0.5):
                seen += await process.stdout.receive_some()
    assert process.poll() is None, "the follower died"
    process.send_signal(signal.SIGINT)
    with trio.fail_after(10):
        assert await process.wait() == 0
    assert b"nobody.example" + hostile + b" HTTP/1.1 404" in seen
