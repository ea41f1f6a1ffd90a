"""HTTP/2 requests cannot smuggle what the HTTP/1.1 request upstream could not carry.

Every stream becomes an HTTP/1.1 request line `METHOD TARGET HTTP/1.1` to the backend. `:method`
and `:path` came through with spaces (and non-ASCII bytes): `:method: GET /secret` with
`:path: /public` was routed and auth-checked as `/public` (an auth-excluded path) while the
backend read `GET /secret /public HTTP/1.1`, a request line the gateway's own HTTP/1.1 parser
refuses. Sent here on the wire against a protected proxy, with a raw backend that records every
request line it gets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests.h2_client import H2Client
from tests.test_http2 import SECURE, connected, serve_names, served
from tests.test_http_conformance import RawBackend
from tests.tls import TestPKI, make_pki

PROTECTED = {
    "auth_enabled": True,
    "auth_required_users": ["*"],
    "auth_excluded_paths": ["/public"],
}


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return make_pki(tmp_path, (SECURE,))


async def _raw_h2(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> tuple[RawBackend, H2Client, str]:
    backend = RawBackend()
    await nursery.start(backend.serve)
    await serve_names(storage, pki, {SECURE: backend.port}, **PROTECTED)
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    authority = f"{SECURE}:{gateway.https_port}"
    await served(client, authority, "/public/ready")
    backend.received.clear()
    return backend, client, authority


SMUGGLING = [
    ("GET /secret", "/public"),  # the backend would read GET /secret /public HTTP/1.1
    ("GET", "/public /secret"),
    ("GET", "/public/\u00e9"),
    ("GET", "/public\t/x"),
    ("G(T", "/public"),
]


async def test_a_request_line_http11_would_refuse_gets_a_400_and_never_reaches_the_backend(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    backend, client, authority = await _raw_h2(nursery, storage, gateway, pki)
    for method, path in SMUGGLING:
        answer = await client.request(authority, path, method=method)
        assert answer.status == 400, (method, path, answer, backend.received, backend.junk)
        assert json.loads(answer.body)["error"] == "bad_request"
    assert backend.received == [] and backend.junk == []
    served = await client.request(authority, "/public/after")
    assert served.status == 200 and served.body == b"target /public/after"
    await client.aclose()
