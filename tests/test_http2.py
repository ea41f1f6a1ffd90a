"""HTTP/2 from clients over TLS: real clients (curl --http2, the `h2` library over a real TLS
socket) against a real gateway; every stream is routed, checked, rewritten and logged as an
HTTP/1.1 request is, and forwarded to an HTTP/1.1 backend."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, HeadersFrame

from oauthproxy.models.certificates import Certificate, CertificateStatus
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests.backend import pattern, serve_backend
from tests.conftest import Mint
from tests.eventually import eventually
from tests.h2_client import H2Answer, H2Client
from tests.tls import TestPKI, make_pki

SECURE, ALSO, OTHER = "secure.example.com", "also.example.com", "other.example.com"


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return make_pki(tmp_path, (SECURE, ALSO))


async def serve_names(
    storage: Storage, pki: TestPKI, backends: dict[str, int], **fields: Any
) -> None:
    """A certificate for SECURE and ALSO, and a proxy per name in `backends`."""
    await storage.certificates.put(
        Certificate(
            cert_name="secure",
            domains=[SECURE, ALSO],
            status=CertificateStatus.ACTIVE,
            fullchain_pem=pki.cert_file.read_text(),
            private_key_pem=pki.key_file.read_text(),
        )
    )
    for hostname, port in backends.items():
        await storage.proxies.create(
            ProxyTarget.model_validate(
                {"hostname": hostname, "target_url": f"http://127.0.0.1:{port}", **fields}
            )
        )


async def backend(nursery: trio.Nursery, name: str) -> int:
    port: int = await nursery.start(functools.partial(serve_backend, name))
    return port


async def connected(port: int, name: str, ca: Path) -> H2Client:
    """An HTTP/2 connection, once the name's certificate is served."""

    async def connect() -> H2Client:
        return await H2Client.connect(port, name, ca)

    return await eventually(
        connect, what=f"{name} over h2", ignoring=(trio.BrokenResourceError, OSError)
    )


async def served(client: H2Client, authority: str, path: str = "/echo") -> H2Answer:
    """The first answer that is not the 404 of a proxy not served yet."""

    async def answered() -> H2Answer | None:
        answer = await client.request(authority, path)
        return answer if answer.status != 404 else None

    return await eventually(answered, what=f"{authority} served over h2")


async def serving_secure(
    nursery: trio.Nursery, storage: Storage, port: int, pki: TestPKI, **fields: Any
) -> H2Client:
    """A proxy for SECURE (to a backend named "one") and an HTTP/2 connection it answers on."""
    await serve_names(storage, pki, {SECURE: await backend(nursery, "one")}, **fields)
    client = await connected(port, SECURE, pki.ca_file)
    await served(client, f"{SECURE}:{port}" if fields else SECURE)
    return client


async def goaway_code(client: H2Client) -> int | None:
    """Read to the connection's end: the error code of the GOAWAY it got (None: none came)."""
    while await client.read() is not None:
        pass
    return None if client.terminated is None else client.terminated.error_code


def curl(port: int, pki: TestPKI, url: str, *options: str) -> subprocess.CompletedProcess[bytes]:
    resolve = [f"{name}:{port}:127.0.0.1" for name in (SECURE, ALSO, OTHER)]
    resolve = [part for name in resolve for part in ("--resolve", name)]
    command = ["curl", "--http2", "--silent", "--show-error", "--cacert", str(pki.ca_file)]
    return subprocess.run([*command, *resolve, *options, url], capture_output=True, check=True)


async def test_curl_negotiates_h2_and_each_authority_reaches_its_proxy(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    one, two = await backend(nursery, "one"), await backend(nursery, "two")
    await serve_names(storage, pki, {SECURE: one, ALSO: two})
    client = await connected(gateway.https_port, ALSO, pki.ca_file)
    await served(client, SECURE)
    await served(client, ALSO)
    await client.aclose()
    for name, expected in ((SECURE, "one"), (ALSO, "two")):
        done = await trio.to_thread.run_sync(
            curl,
            gateway.https_port,
            pki,
            f"https://{name}:{gateway.https_port}/echo/x?y=1",
            "--write-out",
            "\n%{http_version}",
        )
        body, _, version = done.stdout.rpartition(b"\n")
        assert version == b"2"
        echoed = json.loads(body)
        assert echoed["backend"] == expected
        assert echoed["path"] == "/echo/x"
        assert echoed["headers"]["host"] == f"{name}:{gateway.https_port}"
        assert echoed["headers"]["x-forwarded-proto"] == "https"
        assert "transfer-encoding" not in echoed["headers"]


async def test_one_connection_carries_both_names_and_an_uncovered_one_gets_421(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    one, two = await backend(nursery, "one"), await backend(nursery, "two")
    await serve_names(storage, pki, {SECURE: one, ALSO: two, OTHER: two}, enable_http=True)
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    first = await served(client, SECURE)
    second = await served(client, ALSO.upper() + ".")  # the same rules as Host
    refused = await client.request(OTHER, "/echo")
    assert (first.status, second.status) == (200, 200)
    assert json.loads(first.body)["backend"] == "one"
    assert json.loads(second.body)["backend"] == "two"
    assert json.loads(second.body)["headers"]["host"] == ALSO
    assert refused.status == 421
    assert json.loads(refused.body)["error"] == "misdirected_request"
    await client.aclose()


async def test_malformed_header_blocks_get_a_400_and_the_connection_goes_on(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    """RFC 9113 §8.1.1, §8.2, §8.3.1: a malformed request is a stream error, answered 400 with
    the problem named; nothing of it reaches the upstream (where CR/LF would split the
    HTTP/1.1 request), and the connection's next request is served."""
    client = await serving_secure(nursery, storage, gateway.https_port, pki)
    malformed = [
        [("host", ALSO)],
        [("x-smuggled", "1\r\nx-injected: yes")],
        [("connection", "close")],
        [("te", "gzip")],
        [("x-padded", " 1")],
    ]
    for headers in malformed:
        answer = await client.request(SECURE, "/echo", headers=headers)
        assert answer.status == 400, headers
        body = json.loads(answer.body)
        assert body["error"] == "bad_request", body
    served = await client.request(SECURE, "/echo", headers=[("te", "trailers")])
    assert served.status == 200
    assert client.terminated is None
    await client.aclose()


async def test_forged_forwarding_and_identity_headers_are_replaced_over_h2(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    client = await serving_secure(nursery, storage, gateway.https_port, pki)
    forged = [
        ("x-forwarded-for", "6.6.6.6"),
        ("x-real-ip", "6.6.6.6"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "evil.example.com"),
        ("forwarded", "for=6.6.6.6"),
        ("x-auth-user-id", "admin"),
        ("x_auth_email", "root@example.com"),
        ("x_forwarded_for", "6.6.6.6"),
    ]
    answer = await client.request(SECURE, "/echo", headers=forged)
    echoed = json.loads(answer.body)["headers"]
    assert echoed["x-forwarded-for"] == "127.0.0.1"
    assert echoed["x-real-ip"] == "127.0.0.1"
    assert echoed["x-forwarded-proto"] == "https"
    assert echoed["x-forwarded-host"] == SECURE
    for name in ("forwarded", "x-auth-user-id", "x-auth-email", "x_auth_email", "x_forwarded_for"):
        assert name not in echoed
    await client.aclose()


async def test_a_protected_proxy_checks_every_stream(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI, mint: Mint
) -> None:
    protection = {"auth_enabled": True, "auth_required_users": ["*"]}
    client = await serving_secure(nursery, storage, gateway.https_port, pki, **protection)
    origin = f"https://{SECURE}:{gateway.https_port}"
    authority = f"{SECURE}:{gateway.https_port}"
    forged = [("x-auth-user-name", "mallory"), ("x-forwarded-for", "6.6.6.6")]
    refused = await client.request(authority, "/echo", headers=forged)
    assert refused.status == 401
    assert b"resource_metadata" in refused.headers[b"www-authenticate"]
    token = await mint(origin)
    passed = await client.request(
        authority, "/echo", headers=[("authorization", f"Bearer {token}"), *forged]
    )
    assert passed.status == 200
    seen = json.loads(passed.body)["headers"]
    assert seen["x-auth-user-name"] == "alice"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    await client.aclose()


async def test_large_bodies_stream_both_ways(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI, tmp_path: Path
) -> None:
    client = await serving_secure(nursery, storage, gateway.https_port, pki)
    await client.aclose()
    size = 6 * 1024 * 1024 + 7
    upload = tmp_path / "upload.bin"
    upload.write_bytes(pattern(size))
    base = f"https://{SECURE}:{gateway.https_port}"
    sent = await trio.to_thread.run_sync(
        curl, gateway.https_port, pki, f"{base}/upload", "--data-binary", f"@{upload}"
    )
    assert json.loads(sent.stdout) == {
        "sha256": hashlib.sha256(pattern(size)).hexdigest(),
        "length": size,
    }
    got = await trio.to_thread.run_sync(curl, gateway.https_port, pki, f"{base}/bytes/{size}")
    assert len(got.stdout) == size
    assert got.stdout == pattern(size)


async def test_sse_events_arrive_one_by_one(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    client = await serving_secure(nursery, storage, gateway.https_port, pki)
    stream_id = await client.send(SECURE, "/sse")
    answer = await client.answer(stream_id)
    assert answer.status == 200
    assert answer.headers[b"content-type"].startswith(b"text/event-stream")
    events = [piece for piece in answer.pieces if piece]
    assert events == [f"id: {n}\ndata: event {n}\n\n".encode() for n in range(3)]
    await client.aclose()


async def test_rapid_reset_gets_goaway_enhance_your_calm(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI, api: httpx.AsyncClient
) -> None:
    client = await serving_secure(nursery, storage, gateway.https_port, pki)
    h2 = client.h2
    for _ in range(1000):  # CVE-2023-44487: open a stream and reset it at once, many times
        stream_id = h2.get_next_available_stream_id()
        headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", SECURE.encode())]
        h2.send_headers(stream_id, [*headers, (b":path", b"/slow/5.0")])
        h2.reset_stream(stream_id, ErrorCodes.CANCEL)
        try:
            await client.flush()
        except (trio.BrokenResourceError, OSError):
            break  # the gateway closed the connection
    assert await goaway_code(client) == ErrorCodes.ENHANCE_YOUR_CALM

    async def event() -> list[dict[str, Any]] | None:
        params = {"event": "http2.enhance_your_calm"}
        found: list[dict[str, Any]] = (await api.get("/api/v1/logs/search", params=params)).json()[
            "logs"
        ]
        return found or None

    (logged,) = await eventually(event, what="the flood logged")
    assert logged["gateway_reason"] == "more than 200 streams reset by the client in 10s"
    assert logged["client_ip"] == "127.0.0.1"


async def test_a_ping_flood_gets_goaway_enhance_your_calm(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    client = await serving_secure(nursery, storage, gateway.https_port, pki)
    for number in range(1000):
        client.h2.ping(number.to_bytes(8, "big"))
        try:
            await client.flush()
        except (trio.BrokenResourceError, OSError):
            break
    assert await goaway_code(client) == ErrorCodes.ENHANCE_YOUR_CALM


async def test_h2_requests_are_logged_like_http1_ones(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI, api: httpx.AsyncClient
) -> None:
    client = await serving_secure(nursery, storage, gateway.https_port, pki)
    await client.request(SECURE, "/bytes/100000?access_token=secret")
    posted = await client.request(SECURE, "/upload", method="POST", body=b"x" * 5000)
    assert posted.status == 200, posted
    await client.request(OTHER, "/echo/misdirected")
    await client.aclose()

    async def logged() -> list[dict[str, Any]] | None:
        response = await api.get("/api/v1/logs/search", params={"hostname": SECURE})
        found: list[dict[str, Any]] = response.json()["logs"]
        return (
            found
            if {e["request_path"] for e in found}
            >= {"/upload", "/bytes/100000?access_token=REDACTED"}
            else None
        )

    entries = {entry["request_path"]: entry for entry in await eventually(logged, what="h2 logs")}
    download = entries["/bytes/100000?access_token=REDACTED"]
    assert (download["scheme"], download["status"], download["tls_version"]) == (
        "https",
        200,
        "TLSv1.3",
    )
    assert download["bytes_out"] >= 100000
    upload = entries["/upload"]
    assert (upload["method"], upload["status"]) == ("POST", 200)
    assert upload["bytes_in"] >= 5000

    async def refused() -> list[dict[str, Any]] | None:
        response = await api.get("/api/v1/logs/search", params={"q": "misdirected"})
        found: list[dict[str, Any]] = response.json()["logs"]
        return found or None

    (misdirected,) = await eventually(refused, what="the 421 logged")
    assert (misdirected["status"], misdirected["gateway_reason"]) == (421, "misdirected_request")


async def test_a_continuation_flood_and_a_huge_header_block_end_the_connection(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    client = await serving_secure(nursery, storage, gateway.https_port, pki)
    stream_id = client.h2.get_next_available_stream_id()
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", SECURE.encode())]
    block = client.h2.encoder.encode([*fields, (b":path", b"/echo")])
    flood = HeadersFrame(stream_id, data=block).serialize()  # no END_HEADERS: more follows
    flood += b"".join(
        ContinuationFrame(stream_id, data=b"\x00" * 100).serialize() for _ in range(200)
    )
    await client.stream.send_all(flood)
    assert await goaway_code(client) == ErrorCodes.PROTOCOL_ERROR

    huge = await connected(gateway.https_port, SECURE, pki.ca_file)
    with pytest.raises(trio.BrokenResourceError):
        await huge.request(SECURE, "/echo", headers=[("x-big", "a" * 70_000)])
    assert huge.terminated is not None  # more than SETTINGS_MAX_HEADER_LIST_SIZE (64 KiB)
