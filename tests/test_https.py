"""HTTPS on the public port: SNI picks the instance and its certificate; upgrades in place."""

from __future__ import annotations

import functools
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import h11
import httpx
import pytest
import trio

from oauthproxy.models.certificates import Certificate, CertificateStatus
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from oauthproxy.storage.cascades import queue_certificate_delete
from tests.backend import serve_backend
from tests.eventually import eventually
from tests.tls import TestPKI, make_pki

NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    peer_certificate: dict[str, object]


async def https_get(port: int, hostname: str, ca: Path, path: str = "/echo") -> Answer:
    """GET over TLS to 127.0.0.1:port with SNI `hostname`, verifying against `ca`."""
    context = ssl.create_default_context(cafile=str(ca))
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(tcp, context, server_hostname=hostname, https_compatible=True)
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target=path, headers=[("Host", hostname)])
    await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
    status, headers, body = 0, {}, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            status, headers = event.status_code, dict(event.headers)
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    peer = stream.getpeercert() or {}
    await stream.aclose()
    return Answer(status, headers, body, dict(peer))


@pytest.fixture
async def backend(nursery: trio.Nursery) -> int:
    port: int = await nursery.start(functools.partial(serve_backend, "tls"))
    return port


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return make_pki(tmp_path, ("secure.example.com", "also.example.com"))


async def store_certificate(storage: Storage, pki: TestPKI, name: str = "secure") -> None:
    await storage.certificates.put(
        Certificate(
            cert_name=name,
            domains=["secure.example.com", "also.example.com"],
            status=CertificateStatus.ACTIVE,
            fullchain_pem=pki.cert_file.read_text(),
            private_key_pem=pki.key_file.read_text(),
        )
    )


def proxy(hostname: str, port: int, **fields: object) -> ProxyTarget:
    return ProxyTarget.model_validate(
        {"hostname": hostname, "target_url": f"http://127.0.0.1:{port}", **fields}
    )


async def until_https(port: int, hostname: str, ca: Path) -> Answer:
    async def answered() -> Answer:
        return await https_get(port, hostname, ca)

    return await eventually(
        answered, what=f"{hostname} over HTTPS", ignoring=(trio.BrokenResourceError, OSError)
    )


async def test_https_serves_each_name_with_its_certificate(
    storage: Storage, gateway: Ready, backend: int, pki: TestPKI
) -> None:
    await store_certificate(storage, pki)
    await storage.proxies.create(proxy("secure.example.com", backend))
    await storage.proxies.create(proxy("also.example.com", backend))
    for hostname in ("secure.example.com", "also.example.com"):
        answer = await until_https(gateway.https_port, hostname, pki.ca_file)
        assert answer.status == 200
        echoed = httpx.Response(200, content=answer.body).json()
        assert echoed["headers"]["x-forwarded-proto"] == "https"
        assert echoed["headers"]["host"] == hostname


async def test_unknown_or_missing_sni_is_refused(
    storage: Storage, gateway: Ready, backend: int, pki: TestPKI
) -> None:
    await store_certificate(storage, pki)
    await storage.proxies.create(proxy("secure.example.com", backend))
    await until_https(gateway.https_port, "secure.example.com", pki.ca_file)
    with pytest.raises(trio.BrokenResourceError):
        await https_get(gateway.https_port, "nobody.example.com", pki.ca_file)


async def test_http_proxy_upgrades_to_https_in_place_without_failures(
    storage: Storage, gateway: Ready, backend: int, pki: TestPKI
) -> None:
    await storage.proxies.create(proxy("secure.example.com", backend))
    base = f"http://127.0.0.1:{gateway.http_port}"
    failures: list[str] = []
    served = 0
    done = trio.Event()
    first_served = trio.Event()

    async def plain_load() -> None:
        nonlocal served
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            while not done.is_set():
                response = await client.get("/echo", headers={"Host": "secure.example.com"})
                if response.status_code == 200:
                    served += 1
                    first_served.set()
                elif served:  # before the proxy is up, a 404 is expected
                    failures.append(f"http {response.status_code}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(plain_load)
        nursery.start_soon(plain_load)
        with trio.fail_after(10):
            await first_served.wait()
        await store_certificate(storage, pki)
        target = await storage.proxies.get("secure.example.com")
        assert target is not None
        await storage.proxies.update(target)  # what certificate_ready does for its hostnames
        answer = await until_https(gateway.https_port, "secure.example.com", pki.ca_file)
        assert answer.status == 200
        for _ in range(20):
            assert (
                await https_get(gateway.https_port, "secure.example.com", pki.ca_file)
            ).status == 200
        done.set()
    assert failures == []


async def test_redirect_to_https_spares_acme_challenges(
    storage: Storage, gateway: Ready, backend: int, pki: TestPKI
) -> None:
    await store_certificate(storage, pki)
    await storage.proxies.create(proxy("secure.example.com", backend, https_redirect=True))
    await until_https(gateway.https_port, "secure.example.com", pki.ca_file)
    await storage.challenges.put("tok-123", "tok-123.thumbprint")
    base = f"http://127.0.0.1:{gateway.http_port}"
    async with httpx.AsyncClient(base_url=base, limits=NO_KEEPALIVE) as client:
        moved = await client.get("/echo?x=1", headers={"Host": "secure.example.com"})
        assert moved.status_code == 301
        assert moved.headers["location"] == (
            f"https://secure.example.com:{gateway.https_port}/echo?x=1"
        )
        challenge = await client.get(
            "/.well-known/acme-challenge/tok-123", headers={"Host": "secure.example.com"}
        )
        assert challenge.status_code == 200
        assert challenge.text == "tok-123.thumbprint"
        unknown = await client.get(
            "/.well-known/acme-challenge/tok-123", headers={"Host": "not-yet.example.com"}
        )
        assert unknown.text == "tok-123.thumbprint"


async def test_deleting_the_certificate_falls_back_to_http(
    storage: Storage, gateway: Ready, backend: int, pki: TestPKI
) -> None:
    await store_certificate(storage, pki)
    await storage.proxies.create(proxy("secure.example.com", backend))
    await until_https(gateway.https_port, "secure.example.com", pki.ca_file)
    certificate = await storage.certificates.get("secure")
    assert certificate is not None
    async with storage.redis.pipeline(transaction=True) as pipe:
        await queue_certificate_delete(storage, pipe, certificate)
    target = await storage.proxies.get("secure.example.com")
    assert target is not None
    await storage.proxies.update(target)

    async def refused() -> bool:
        try:
            await https_get(gateway.https_port, "secure.example.com", pki.ca_file)
        except trio.BrokenResourceError:
            return True
        return False

    await eventually(refused, what="the handshake refused without the certificate")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        response = await client.get("/echo", headers={"Host": "secure.example.com"})
        assert response.status_code == 200


def _get_offering(
    port: int, hostname: str, context: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[ssl.SSLSession | None, bool]:
    """A blocking `GET /echo` on a new TLS connection that offers `session` for resumption:
    the session to offer next, and whether this one was resumed (on the TLS version the
    context allows at most)."""
    request = f"GET /echo HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=hostname, session=session) as tls,
    ):
        assert tls.version() == context.maximum_version.name.replace("_", ".")
        tls.sendall(request)
        received = b""
        while chunk := tls.recv(65536):
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 "), received[:200]
        return tls.session, bool(tls.session_reused)


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["TLSv1.3", "TLSv1.2"]
)
async def test_returning_tls_clients_resume_their_session(
    storage: Storage, gateway: Ready, backend: int, pki: TestPKI, version: ssl.TLSVersion
) -> None:
    """A returning client skips the full handshake: the session ticket it was given brings it
    back (no certificate signature: a fraction of the CPU of a new handshake, on both sides),
    through the SNI switch to the name's own context, every time. TLS 1.2 too, whose
    handshakes end with the server's Finished (full) or the client's (resumed)."""
    await store_certificate(storage, pki)
    await storage.proxies.create(proxy("secure.example.com", backend))
    await until_https(gateway.https_port, "secure.example.com", pki.ca_file)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.maximum_version = version
    port = gateway.https_port

    def connections() -> list[bool]:
        resumed, session = [], None
        for _ in range(3):
            session, reused = _get_offering(port, "secure.example.com", context, session)
            resumed.append(reused)
        return resumed

    assert await trio.to_thread.run_sync(connections) == [False, True, True]


async def secure_connection(
    storage: Storage, gateway: Ready, backend: int, pki: TestPKI
) -> trio.SSLStream[trio.SocketStream]:
    """A new TLS connection to secure.example.com, once it is served (by `backend`)."""
    await store_certificate(storage, pki)
    await storage.proxies.create(proxy("secure.example.com", backend))
    await until_https(gateway.https_port, "secure.example.com", pki.ca_file)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    tcp = await trio.open_tcp_stream("127.0.0.1", gateway.https_port)
    return trio.SSLStream(tcp, context, server_hostname="secure.example.com")


async def _h11_exchange(stream: trio.abc.Stream, conn: h11.Connection) -> tuple[int, bytes]:
    """The next response on `conn`: its status and body."""
    status, body = 0, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            conn.start_next_cycle()
            return status, body


async def test_one_tls_connection_carries_pipelined_requests_and_large_bodies_both_ways(
    storage: Storage, gateway: Ready, backend: int, pki: TestPKI
) -> None:
    """Every exchange over HTTPS, on one kept-alive connection: two requests sent in one write
    (the second one's bytes already decrypted and waiting when the first is answered), a large
    download and a large upload (many TLS records each way), then a small request again."""
    stream = await secure_connection(storage, gateway, backend, pki)
    conn, host = h11.Connection(h11.CLIENT), [("Host", "secure.example.com")]
    size = 8 * 1024 * 1024
    upload = bytes(range(256)) * (size // 256)
    with trio.fail_after(60):
        await stream.send_all(
            b"GET /echo/one HTTP/1.1\r\nHost: secure.example.com\r\n\r\n"
            b"GET /echo/two HTTP/1.1\r\nHost: secure.example.com\r\n\r\n"
        )
        for path in ("/echo/one", "/echo/two"):
            request = h11.Request(method="GET", target=path, headers=host)
            conn.send(request)  # (sent already, above: h11 learns what the answer is to)
            conn.send(h11.EndOfMessage())
            status, body = await _h11_exchange(stream, conn)
            assert status == 200
            assert httpx.Response(200, content=body).json()["path"] == path
        request = h11.Request(method="GET", target=f"/bytes/{size}", headers=host)
        await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
        status, body = await _h11_exchange(stream, conn)
        assert (status, len(body)) == (200, size)
        headers = [*host, ("Content-Length", str(size))]
        request = h11.Request(method="POST", target="/upload", headers=headers)
        await stream.send_all(conn.send(request))
        await stream.send_all(conn.send(h11.Data(data=upload)) + conn.send(h11.EndOfMessage()))
        status, body = await _h11_exchange(stream, conn)
        assert status == 200
        assert httpx.Response(200, content=body).json()["length"] == size
        request = h11.Request(method="GET", target="/echo/again", headers=host)
        await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
        assert (await _h11_exchange(stream, conn))[0] == 200
    await stream.aclose()


async def test_a_websocket_over_tls_is_spliced_both_ways(
    storage: Storage, gateway: Ready, backend: int, pki: TestPKI
) -> None:
    """After the 101 the TLS stream is read and written by two tasks at once (the splice)."""
    import wsproto
    import wsproto.events as ws

    stream = await secure_connection(storage, gateway, backend, pki)
    connection = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await stream.send_all(connection.send(ws.Request(host="secure.example.com", target="/ws")))
    received: list[object] = []

    async def events_until(kind: type, count: int = 1) -> None:
        with trio.fail_after(10):
            while sum(isinstance(e, kind) for e in received) < count:
                connection.receive_data(bytes(await stream.receive_some(65536)))
                received.extend(connection.events())

    await events_until(ws.AcceptConnection)
    for number in range(20):
        await stream.send_all(connection.send(ws.TextMessage(data=f"hello {number}")))
    await events_until(ws.TextMessage, 20)
    texts = [e.data for e in received if isinstance(e, ws.TextMessage)]
    assert texts == [f"echo: hello {number}" for number in range(20)]
    await stream.send_all(connection.send(ws.CloseConnection(code=1000)))
    await stream.aclose()


async def test_a_deleted_proxys_tls_connections_close_at_once(
    storage: Storage, gateway: Ready, pki: TestPKI, nursery: trio.Nursery
) -> None:
    """As over HTTP (tests/test_dataplane.py): a held request and a pipelined one the gateway
    has not read; once the deleted proxy's grace period is over, RST, not a gentle close."""
    from tests.test_dataplane import reset_or_closed
    from tests.test_drain import HeldBackend

    backend = HeldBackend()
    await store_certificate(storage, pki)
    await storage.proxies.create(proxy("secure.example.com", await nursery.start(backend.serve)))
    await until_https(gateway.https_port, "secure.example.com", pki.ca_file)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    tcp = await trio.open_tcp_stream("127.0.0.1", gateway.https_port)
    stream = trio.SSLStream(tcp, context, server_hostname="secure.example.com")
    with trio.fail_after(30):
        await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: secure.example.com\r\n\r\n")
        await backend.received.wait()  # the gateway now waits for the answer, reading nothing
        await stream.send_all(b"GET /ok HTTP/1.1\r\nHost: secure.example.com\r\n\r\n")
        await storage.proxies.delete("secure.example.com")
        assert await reset_or_closed(stream) == "reset"
    await tcp.aclose()
