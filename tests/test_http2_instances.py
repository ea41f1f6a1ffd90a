"""HTTP/2 streams and the life of the instance that answers them: a proxy deleted while one of
its streams is in flight lets it finish (within the grace period) as it lets an HTTP/1.1
request finish, cancels it after, and its connection gets a graceful GOAWAY; the metrics count
streams in flight. Over real TLS with the `h2` test client, against a real gateway."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio
from h2.errors import ErrorCodes
from prometheus_client.parser import text_string_to_metric_families

from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests.eventually import eventually
from tests.h2_client import H2Client
from tests.test_drain import GUARD_SECONDS, HeldBackend
from tests.test_http2 import SECURE, connected, goaway_code, serve_names
from tests.tls import TestPKI, make_pki


async def _held_stream(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, tmp_path: Path
) -> tuple[HeldBackend, H2Client, int]:
    """SECURE proxied to a held backend, an HTTP/2 connection, and a stream held there."""
    pki: TestPKI = make_pki(tmp_path, (SECURE,))
    held = HeldBackend()
    port: int = await nursery.start(held.serve)
    await serve_names(storage, pki, {SECURE: port})
    client = await connected(gateway.https_port, SECURE, pki.ca_file)

    async def answered() -> bool:
        return (await client.request(SECURE, "/ok")).status == 200

    await eventually(answered, what=f"{SECURE} served over h2")
    stream_id = await client.send(SECURE, "/slow")
    with trio.fail_after(GUARD_SECONDS):
        await held.received.wait()
    return held, client, stream_id


async def _gauges(api: httpx.AsyncClient) -> dict[str, float]:
    text = (await api.get("/metrics")).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in ("oauthproxy_open_connections", "oauthproxy_active_requests")
    }


async def _deleted(api: httpx.AsyncClient, client: H2Client) -> None:
    """Delete SECURE's proxy; return once a new stream for it gets the unknown host's 404."""
    assert (await api.delete(f"/api/v1/proxy/targets/{SECURE}")).status_code == 200

    async def unknown() -> bool:
        return (await client.request(SECURE, "/ok")).status == 404

    await eventually(unknown, what=f"{SECURE} no longer served")


async def test_a_deleted_proxy_lets_its_stream_finish_then_the_connection_gets_goaway(
    nursery: trio.Nursery,
    storage: Storage,
    gateway: Ready,
    api: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    held, client, slow = await _held_stream(nursery, storage, gateway, tmp_path)
    assert await _gauges(api) == {
        "oauthproxy_open_connections": 1.0,  # the HTTP/2 connection, with its stream in flight
        "oauthproxy_active_requests": 1.0,
    }
    await _deleted(api, client)
    assert client.terminated is None  # no GOAWAY while the stream runs
    held.release.set()
    with trio.fail_after(GUARD_SECONDS):
        answer = await client.answer(slow)
        assert (answer.status, answer.body, answer.reset) == (200, b"slow done", None)
        assert await goaway_code(client) == ErrorCodes.NO_ERROR
    assert client.terminated is not None
    assert client.terminated.last_stream_id >= slow
    await client.aclose()


async def test_a_stream_past_the_grace_period_is_cancelled_and_goaway_follows(
    nursery: trio.Nursery,
    storage: Storage,
    gateway: Ready,
    api: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    held, client, slow = await _held_stream(nursery, storage, gateway, tmp_path)
    await _deleted(api, client)
    with trio.fail_after(GUARD_SECONDS):  # the gateway's grace period is 2 s (make_settings)
        answer = await client.answer(slow)
        assert answer.reset == ErrorCodes.CANCEL
        assert await goaway_code(client) == ErrorCodes.NO_ERROR
    assert await _gauges(api) == {
        "oauthproxy_open_connections": 0.0,
        "oauthproxy_active_requests": 0.0,
    }
    held.release.set()
    await client.aclose()
