"""Bounds on what one client makes the gateway keep: attacks from the exhaustion hunt of
2026-12-05, each sent on the wire.

- A head of many tiny fields (`a:\\r\\n`, four bytes each) held ~29 times its size in Python
  objects while it waited for its end: now at most MAX_HEADER_FIELDS fields (431).
- A long Connection value was kept in a process-wide cache (256 of them, ~155 MiB): only short
  values are cached now.
- `h2` remembered 65,536 closed streams per connection, so a connection grew with every request
  it served: now 1,024.
- `/authorize` kept any `state` with the login (16 KB): now at most 2,048 characters.
- An anonymous form of 500,000 fields (`a&a&...`, 1 MiB) to `/token` was parsed on the event
  loop every tenant shares (~0.4 s each), and again by the audit hook: now at most 16 KiB and
  100 fields, for the OAuth endpoints and the consent decision.
- A request target of up to 64 KiB was stored whole in the log: now cut at 2,048 characters.
- A client metadata document was cached as long as it asked, up to a day: now an hour.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import trio
from h2.connection import H2Connection
from quart import Response

from oauthproxy.api.forms import FORM_MAX_FIELDS
from oauthproxy.logs.records import STORED_TARGET_LENGTH
from oauthproxy.models.oauth import OAuthClient
from oauthproxy.oauth.authorize import MAX_STATE_LENGTH
from oauthproxy.proxy import headers
from oauthproxy.proxy.codec import MAX_HEADER_FIELDS
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from oauthproxy.storage.oauth import MAX_CACHED_DOCUMENTS
from tests import document_server, oauth_helpers
from tests.document_server import DocumentServer
from tests.eventually import eventually
from tests.github_standin import GitHubStandIn
from tests.h2_client import H2Client
from tests.oauth_helpers import REDIRECT_URI, FlowClient, pkce_pair
from tests.test_dataplane_limits import start_gateway
from tests.test_http2 import ALSO, SECURE, backend, connected, serve_names, served
from tests.tls import TestPKI, make_pki

github = oauth_helpers.github
pki = document_server.pki
documents = document_server.documents


async def status_of(port: int, head: bytes) -> int:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(head)
        received = b""
        with trio.fail_after(10):
            while b"\r\n" not in received:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
    return int(received.split(b" ", 2)[1])


async def test_a_head_of_more_fields_than_the_bound_is_a_431(
    nursery: trio.Nursery, make_settings: Callable[..., Settings]
) -> None:
    ready = await start_gateway(nursery, make_settings)

    def head(fields: int) -> bytes:
        # Host is one of the fields; the rest are four bytes each
        return b"GET / HTTP/1.1\r\nHost: nowhere.example\r\n" + b"a:\r\n" * (fields - 1) + b"\r\n"

    assert await status_of(ready.http_port, head(MAX_HEADER_FIELDS)) == 404  # (no such proxy)
    assert await status_of(ready.http_port, head(MAX_HEADER_FIELDS + 1)) == 431
    # and a head that never ends is refused as soon as it has too many
    assert await status_of(ready.http_port, head(5000)[:-2]) == 431


async def test_long_connection_values_stay_out_of_the_cache(
    nursery: trio.Nursery, make_settings: Callable[..., Settings]
) -> None:
    ready = await start_gateway(nursery, make_settings)
    cached = headers._cached_listed.cache_info().currsize
    for number in range(20):
        long = b", ".join(b"x-option-%d-%d" % (number, i) for i in range(200))
        head = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: " + long + b"\r\n\r\n"
        assert await status_of(ready.http_port, head) == 200  # the gateway's own /health
    assert headers._cached_listed.cache_info().currsize == cached
    short = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: x-one, keep-alive\r\n\r\n"
    assert await status_of(ready.http_port, short) == 200
    assert headers._cached_listed.cache_info().currsize == cached + 1


async def test_an_http2_connection_remembers_a_bounded_number_of_closed_streams(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    pki = make_pki(tmp_path, (SECURE, ALSO))
    ready = await start_gateway(nursery, make_settings, request_log_enabled=False)
    await serve_names(storage, pki, {SECURE: await backend(nursery, "one")})
    client: H2Client = await connected(ready.https_port, SECURE, pki.ca_file)
    await served(client, SECURE)
    for _ in range(15):  # 1,500 streams, ten at once (an unknown name the certificate covers)
        ids = [await client.send(ALSO, "/x") for _ in range(100)]
        for stream_id in ids:
            assert (await client.answer(stream_id)).status == 404
        client._answers.clear()
        client._ended.clear()
    gc.collect()
    servers = [
        connection
        for connection in gc.get_objects()
        if isinstance(connection, H2Connection) and not connection.config.client_side
    ]
    assert servers, "the gateway's HTTP/2 connection was not found"
    assert max(len(connection._closed_streams) for connection in servers) <= 1024
    await client.aclose()


async def test_authorize_keeps_no_long_state(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    ready = await oauth_helpers.start_gateway(nursery, make_settings, github)
    async with httpx.AsyncClient(base_url=ready.api_url) as http:
        client = await FlowClient(http).register()
        query = {
            "client_id": client["client_id"],
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "code_challenge": pkce_pair()[1],
            "code_challenge_method": "S256",
        }
        too_long = await http.get("/authorize", params=query | {"state": "s" * 15_000})
        # (a page with a link back, for a client the admin did not register)
        assert too_long.status_code == 400 and "state is longer than" in too_long.text
        assert not await storage.redis.keys("oauth:state:*")
        fits = await http.get("/authorize", params=query | {"state": "s" * MAX_STATE_LENGTH})
        assert fits.status_code in (302, 303), fits.text
        assert "error=" not in fits.headers["location"]


async def test_an_oauth_form_is_bounded_in_bytes_and_fields(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], github: GitHubStandIn
) -> None:
    ready = await oauth_helpers.start_gateway(nursery, make_settings, github)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=form) as http:
        many = "&".join(["a"] * 500_000).encode()  # (1 MiB: the API's own body limit)
        fields = "grant_type=refresh_token&" + "&".join(f"f{i}=x" for i in range(FORM_MAX_FIELDS))
        for path in ("/token", "/revoke", "/introspect"):
            for body, problem in ((many, "larger than"), (fields.encode(), "more than")):
                answer = await http.post(path, content=body)
                assert answer.status_code in (400, 401), (path, answer.text)
                assert answer.json()["error"] == "invalid_request", (path, answer.text)
                assert problem in answer.json()["error_description"]
        decision = await http.post("/consent", content=many)
        assert decision.status_code == 400 and "larger than" in decision.text
        # a form within the bounds is read as before
        fitting = await http.post("/token", content=b"grant_type=refresh_token&refresh_token=x")
        assert fitting.json()["error"] in ("invalid_client", "invalid_grant"), fitting.text


async def test_a_long_target_is_stored_cut(gateway: Ready) -> None:
    target = "/" + "p" * 20_000
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.http_port}", headers={"Host": "nowhere.example"}
    ) as public:
        assert (await public.get(target)).status_code == 404
    admin = {"Authorization": f"Bearer {gateway.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=admin) as api:

        async def logged() -> list[str] | None:
            answer = await api.get("/api/v1/logs/search", params={"hostname": "nowhere.example"})
            paths = [entry["request_path"] for entry in answer.json()["logs"]]
            return paths or None

        paths = await eventually(logged, what="the request in the log")
    assert paths == [target[:STORED_TARGET_LENGTH] + "…"]


async def test_a_client_document_is_cached_an_hour_at_most(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
    pki: TestPKI,
    documents: DocumentServer,
) -> None:
    ready = await oauth_helpers.start_gateway(
        nursery, make_settings, github, oauth_cimd_allow_loopback=True, oauth_ca_bundle=pki.ca_file
    )
    url = documents.url("long.json")
    body = {
        "client_id": url,
        "client_name": "Long-lived",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
    }
    headers = {"Content-Type": "application/json", "Cache-Control": "max-age=86400"}
    documents.documents["long.json"] = Response(json.dumps(body), 200, headers)
    async with httpx.AsyncClient(base_url=ready.api_url) as http:
        form = {"grant_type": "refresh_token", "refresh_token": "x", "client_id": url}
        await http.post("/token", data=form)
    [cached] = await storage.redis.keys("oauth:client_document:*")
    assert 0 < await storage.redis.ttl(cached) <= 3600


async def test_client_documents_cached_from_many_addresses_stay_bounded(
    storage: Storage,
) -> None:
    """The rate limit bounds how fast one address adds documents to the cache, not how many
    addresses add them: each fetched document stayed its whole hour. Now at most
    MAX_CACHED_DOCUMENTS stay, the ones closest to expiry go first, and the index lives no
    longer than its longest-lived document."""
    client = OAuthClient(client_id="https://c.example/doc", token_endpoint_auth_method="none")
    extra = 40
    for number in range(MAX_CACHED_DOCUMENTS + extra):
        # the first `extra` expire soonest: they are the ones dropped
        seconds = 60 if number < extra else 3600
        await storage.oauth.cache_document(f"hash{number}", client, seconds)
    cached = await storage.redis.keys("oauth:client_document:*")
    assert len(cached) == MAX_CACHED_DOCUMENTS
    assert not {f"oauth:client_document:hash{number}" for number in range(extra)} & set(cached)
    assert await storage.redis.zcard("oauth:client_documents") == MAX_CACHED_DOCUMENTS
    assert 3500 < await storage.redis.ttl("oauth:client_documents") <= 3600
    assert await storage.oauth.cached_document(f"hash{extra}") == client


async def _scan_calls(storage: Storage) -> int:
    found = (await storage.redis.info("commandstats")).get("cmdstat_scan") or {}
    if isinstance(found, dict):
        return int(found.get("calls", 0))
    return int(str(found).split("calls=")[1].split(",")[0])


async def test_anonymous_health_checks_share_one_keyspace_scan(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    """An anonymous `GET /health` counted the certificates by scanning the whole keyspace (200
    SCAN round trips at 200,000 keys), every time, with no rate limit. Anonymous callers now
    share an answer at most 5 s old; the admin's is read afresh."""
    ready = await start_gateway(nursery, make_settings)
    async with storage.redis.pipeline(transaction=False) as pipe:
        for number in range(20_000):
            pipe.set(f"oauth:client:mcp_filler{number}", "{}")
    admin = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=ready.api_url, timeout=30) as http:
        before = await _scan_calls(storage)
        assert (await http.get("/health", headers=admin)).status_code in (200, 503)
        one = await _scan_calls(storage) - before
        assert one >= 10  # (a scan of 20,000 keys takes that many round trips)
        before = await _scan_calls(storage)
        for _ in range(10):
            answer = await http.get("/health")
            assert "certificates" in answer.json(), answer.text
        assert await _scan_calls(storage) - before <= one + 2
