"""Start-up and stalls have bounds: listeners bound first, a stalled Redis is a 503, a silent
client is closed after PROXY_FIRST_REQUEST_TIMEOUT."""

from __future__ import annotations

import functools
import os
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio

from oauthproxy.api.app import create_app
from oauthproxy.condition import GatewayCondition
from oauthproxy.proxy import dispatcher
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.backend import serve_backend
from tests.conftest import free_port, redis_command, venv_bin, wait_for_port
from tests.test_https import https_get, proxy, store_certificate, until_https
from tests.tls import make_pki


async def test_an_admin_call_during_a_redis_stall_answers_503_not_a_hang(
    nursery: trio.Nursery, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    port = free_port()
    redis = await trio.lowlevel.open_process(
        redis_command(port, tmp_path), stdout=subprocess.DEVNULL
    )
    try:
        await wait_for_port(port)
        settings = make_settings(redis_url=f"redis://127.0.0.1:{port}/0", api_redis_timeout=0.5)
        ready: Ready = await nursery.start(
            lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
        )
        headers = {"Authorization": f"Bearer {ready.admin_token.secret}"}
        async with httpx.AsyncClient(base_url=ready.api_url, headers=headers, timeout=60) as api:
            assert (await api.get("/api/v1/tokens/")).status_code == 200
            redis.send_signal(signal.SIGSTOP)  # a stalled server: connected, never answering
            try:
                with trio.fail_after(30):
                    stalled = await api.post("/api/v1/tokens/generate", json={"name": "late"})
            finally:
                redis.send_signal(signal.SIGCONT)
            assert stalled.status_code == 503
            assert stalled.json()["error"] == "storage_timeout"
            assert "API_REDIS_TIMEOUT" in stalled.json()["detail"]
            assert (await api.get("/api/v1/tokens/")).status_code == 200
    finally:
        redis.kill()
        await redis.wait()


@pytest.mark.parametrize("setting", ["HTTP_PORT", "HTTPS_PORT", "PROXY_PROTOCOL_PORT", "API_PORT"])
async def test_a_taken_port_stops_start_up_with_one_line(tmp_path: Path, setting: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        names = {name.upper() for name in Settings.model_fields}
        env = {k: v for k, v in os.environ.items() if k.upper() not in names}
        env.update(
            OAUTHPROXY_DATA_DIR=str(tmp_path / "data"),
            SERVER_HOST="127.0.0.1",
            API_BIND_HOST="127.0.0.1",
            API_PORT=str(free_port()),
            HTTP_PORT=str(free_port()),
            HTTPS_PORT=str(free_port()),
            PROXY_PROTOCOL_PORT=str(free_port()),
        )
        env[setting] = str(port)
        result = await trio.run_process(
            [venv_bin("oauthproxy"), "run"],
            env=env,
            cwd=str(tmp_path),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert stderr.strip().splitlines() == [
        f"oauthproxy: cannot listen on 127.0.0.1:{port} ({setting}): Address already in use"
    ]
    assert b"ready" not in result.stdout
    assert not (tmp_path / "data" / "valkey.pid").exists(), "Redis started before the bind"


async def test_health_is_503_while_the_gateway_is_starting(storage: Storage) -> None:
    settings = Settings(_env_file=None, redis_url="redis://unused")
    condition = GatewayCondition()
    app = create_app(settings, storage, embedded_redis=False, condition=condition)
    client = app.test_client()
    starting = await client.get("/health")
    assert starting.status_code == 503
    assert "starting" in (await starting.get_json())["problems"]
    condition.ready = True
    assert (await client.get("/health")).status_code == 200


async def test_a_silent_connection_is_closed_after_the_first_request_timeout(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(proxy_first_request_timeout=0.2)
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    stream = await trio.open_tcp_stream("127.0.0.1", ready.http_port)
    async with stream:
        with trio.fail_after(20):  # the default (30 s) would end the test here
            assert await stream.receive_some() == b""


async def test_a_tls_client_that_never_finishes_its_handshake_is_closed_after_the_timeout(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The handshake's deadline is kept by the port's sweep (`HandOverDeadlines`), off trio's
    deadline heap: a client that sends the start of a ClientHello and no more is closed once
    the deadline passes all the same (here 0.4 s, armed by a sweep every 0.1 s), long before
    the first request's (30 s)."""
    monkeypatch.setattr(dispatcher, "TLS_HANDSHAKE_TIMEOUT", 0.4)
    settings = make_settings(proxy_first_request_timeout=30)
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    stream = await trio.open_tcp_stream("127.0.0.1", ready.https_port)
    async with stream:
        await stream.send_all(b"\x16\x03\x01\x02\x00\x01")  # a record header, a type, no more
        with trio.fail_after(20):  # the first request's deadline (30 s) would end the test here
            try:
                closed = await stream.receive_some() == b""
            except trio.BrokenResourceError:
                closed = True
        assert closed


async def test_a_tls_connection_silent_after_its_handshake_is_closed_after_the_timeout(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    """Over TLS the first request's deadline follows the handshake's (one cancel scope, its
    deadline restarted): a client that completes the handshake and then sends nothing is
    closed all the same, and the next one is served."""
    pki = make_pki(tmp_path, ("secure.example.com", "also.example.com"))
    backend: int = await nursery.start(functools.partial(serve_backend, "tls"))
    settings = make_settings(proxy_first_request_timeout=0.3)
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    await store_certificate(storage, pki)
    await storage.proxies.create(proxy("secure.example.com", backend))
    await until_https(ready.https_port, "secure.example.com", pki.ca_file)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    tcp = await trio.open_tcp_stream("127.0.0.1", ready.https_port)
    stream = trio.SSLStream(tcp, context, server_hostname="secure.example.com")
    async with stream:
        await stream.do_handshake()
        with trio.fail_after(20):  # the default (30 s) would end the test here
            try:
                closed = await stream.receive_some() == b""
            except trio.BrokenResourceError:  # closed without close_notify: HTTPS-compatible
                closed = True
        assert closed
    answer = await https_get(ready.https_port, "secure.example.com", pki.ca_file)
    assert answer.status == 200
