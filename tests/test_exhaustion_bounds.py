"""Bounds on what one client makes the gateway keep: attacks from the exhaustion hunt of
2026-12-05, each sent on the wire.

- A head of many tiny fields (`a:\\r\\n`, four bytes each) held ~29 times its size in Python
  objects while it waited for its end: now at most MAX_HEADER_FIELDS fields (431).
- A long Connection value was kept in a process-wide cache (256 of them, ~155 MiB): only short
  values are cached now.
- `h2` remembered 65,536 closed streams per connection, so a connection grew with every request
  it served: now 1,024.
- `/authorize` kept any `state` with the login (16 KB): now at most 2,048 characters.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import httpx
import trio
from h2.connection import H2Connection

from oauthproxy.oauth.authorize import MAX_STATE_LENGTH
from oauthproxy.proxy import headers
from oauthproxy.proxy.codec import MAX_HEADER_FIELDS
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.github_standin import GitHubStandIn
from tests.h2_client import H2Client
from tests.oauth_helpers import REDIRECT_URI, FlowClient, pkce_pair
from tests.test_dataplane_limits import start_gateway
from tests.test_http2 import ALSO, SECURE, backend, connected, serve_names, served
from tests.tls import make_pki

github = oauth_helpers.github


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
