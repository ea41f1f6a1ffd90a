"""What the request log says about the connection: the real client behind a real haproxy
(`send-proxy`), over TLS with its version, and the bytes each way; an SSE stream as one; the
protocol (curl over HTTP/2 and HTTP/1.1)."""

from __future__ import annotations

import ssl
import subprocess
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests.eventually import eventually
from tests.test_https import pki, proxy, store_certificate
from tests.test_proxy_protocol import CLIENT_ADDRESS, backend, behind_haproxy, exchange, get
from tests.tls import TestPKI

__all__ = ["backend", "behind_haproxy", "pki"]  # fixtures


async def logged(gateway: Ready, hostname: str, status: int) -> list[dict[str, Any]]:
    """The hostname's entries with `status`, once there is one (batches land every 100 ms)."""
    headers = {"Authorization": f"Bearer {gateway.admin_token.secret}"}
    params: dict[str, str | int] = {"hostname": hostname, "status": status}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as admin:

        async def some() -> list[dict[str, Any]] | None:
            response = await admin.get("/api/v1/logs/search", params=params)
            found: list[dict[str, Any]] = response.json()["logs"]
            return found or None

        return await eventually(some, what=f"log entries for {params}")


@pytest.mark.parametrize("behind_haproxy", ["send-proxy", "send-proxy-v2"], indirect=True)
async def test_the_real_client_and_tls_version_behind_haproxy(
    behind_haproxy: tuple[Ready, int], storage: Storage, backend: int, pki: TestPKI
) -> None:
    gateway, front = behind_haproxy
    await store_certificate(storage, pki)
    await storage.proxies.create(proxy("secure.example.com", backend))
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    forged = "X-Forwarded-For: 203.0.113.9"  # from the client: not believed, not logged

    async def served() -> bytes | None:
        answer = await exchange(front, get("secure.example.com", forged), context)
        return answer if b" 200 " in answer[:20] else None

    answer = await eventually(
        served,
        what="secure.example.com served through haproxy",
        ignoring=(trio.BrokenResourceError, ssl.SSLError, OSError),
    )
    entry = (await logged(gateway, "secure.example.com", 200))[0]
    assert entry["client_ip"] == CLIENT_ADDRESS, entry
    assert entry["scheme"] == "https", entry
    assert entry["tls_version"] == "TLSv1.3", entry
    assert entry["request_path"] == "/echo", entry
    assert entry["bytes_in"] > len(get("secure.example.com", forged)), entry  # TLS included
    assert entry["bytes_out"] > len(answer), entry
    assert "203.0.113.9" not in str(entry)


async def test_a_failed_handshake_is_an_event_naming_the_sni_it_asked_for(gateway: Ready) -> None:
    tcp = await trio.open_tcp_stream("127.0.0.1", gateway.https_port)
    context = ssl.create_default_context()
    stream = trio.SSLStream(tcp, context, server_hostname="nobody.example.com")
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError):
        await stream.do_handshake()
    await trio.aclose_forcefully(stream)
    headers = {"Authorization": f"Bearer {gateway.admin_token.secret}"}
    params = {"event": "tls.handshake_failed"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as admin:

        async def some() -> list[dict[str, Any]] | None:
            response = await admin.get("/api/v1/logs/search", params=params)
            found: list[dict[str, Any]] = response.json()["logs"]
            return found or None

        found = await eventually(some, what="a tls.handshake_failed event")
    assert found[0]["client_ip"] == "127.0.0.1"
    assert found[0]["gateway_reason"].startswith("sni=nobody.example.com: ")
    assert found[0]["level"] == "WARNING"


async def test_an_sse_stream_is_logged_as_one(
    gateway: Ready, storage: Storage, backend: int
) -> None:
    await storage.proxies.create(proxy("sse.example.com", backend))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as public:

        async def streamed() -> bool:
            answer = await public.get("/sse", headers={"Host": "sse.example.com"})
            return answer.status_code == 200

        await eventually(streamed, what="sse.example.com served")
    entry = (await logged(gateway, "sse.example.com", 200))[0]
    assert (entry["kind"], entry["event"]) == ("sse", "sse"), entry
    assert float(entry["duration_ms"]) >= 900  # the whole stream: three events, 0.3 s after each


def curl(port: int, pki: TestPKI, version: str, url: str) -> bytes:
    command = ["curl", version, "--silent", "--show-error", "--fail", "--cacert", str(pki.ca_file),
               "--resolve", f"secure.example.com:{port}:127.0.0.1", "--write-out",
               "%{http_version}", "--output", "/dev/null", url]  # fmt: skip
    return subprocess.run(command, capture_output=True, check=True).stdout


async def test_each_entry_names_its_protocol_and_a_query_finds_it(
    gateway: Ready, storage: Storage, backend: int, pki: TestPKI
) -> None:
    """curl over HTTP/2 and over HTTP/1.1: each entry says which, and `protocol:` finds it."""
    await store_certificate(storage, pki)
    await storage.proxies.create(proxy("secure.example.com", backend))
    base = f"https://secure.example.com:{gateway.https_port}"

    async def served() -> bytes | None:
        try:
            return await trio.to_thread.run_sync(curl, gateway.https_port, pki, "--http2",
                                                 f"{base}/echo/two")  # fmt: skip
        except subprocess.CalledProcessError:
            return None  # the proxy or its certificate is not served yet

    assert await eventually(served, what="secure.example.com over h2") == b"2"
    one = await trio.to_thread.run_sync(curl, gateway.https_port, pki, "--http1.1",
                                        f"{base}/echo/one")  # fmt: skip
    assert one == b"1.1"
    headers = {"Authorization": f"Bearer {gateway.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as admin:

        async def paths(**params: str) -> list[str] | None:
            params["hostname"] = "secure.example.com"
            response = await admin.get("/api/v1/logs/search", params=params)
            logs = response.json()["logs"]
            found = [f"{entry['request_path']} {entry['protocol']}" for entry in logs]
            return [line for line in found if line.startswith("/echo/")] or None

        both = await eventually(lambda: paths(path="/echo/o"), what="the HTTP/1.1 entry")
        assert both == ["/echo/one HTTP/1.1"]
        assert await paths(q="protocol:HTTP/2") == ["/echo/two HTTP/2"]
        assert await paths(protocol="HTTP/1.1") == ["/echo/one HTTP/1.1"]
        assert await paths(protocol="h2", path="/echo/one") is None
        refused = await admin.get("/api/v1/logs/search", params={"protocol": "spdy/3"})
        assert refused.status_code == 422 and "protocol" in refused.text
