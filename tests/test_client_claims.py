"""What a client, or an owner, writes into a request's headers never reaches a backend as the
gateway's word: identity headers under a prefix spelled with `_`, other balancers' client-address
headers, an owner's headers on the admin's global routes; and an HTTP/2 head is held to the
field count of an HTTP/1.1 one. Each attack is sent on the wire (found by an attack hunt)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests.conftest import Mint
from tests.eventually import eventually
from tests.h2_client import H2Answer
from tests.tenants import ROUTES, World, created, proxy, served_by, world
from tests.test_http2 import SECURE, backend, connected, serve_names
from tests.tls import TestPKI, make_pki

__all__ = ["world"]


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return make_pki(tmp_path, (SECURE,))


async def raw_http(port: int, request: bytes) -> bytes:
    """Send raw bytes to the HTTP port and read until the gateway closes (10 s at most)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    received = b""
    with trio.move_on_after(10):
        await stream.send_all(request)
        while data := await stream.receive_some(65536):
            received += data
    await trio.aclose_forcefully(stream)
    return received


def json_body(response: bytes) -> dict[str, object]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response[:500]
    if b"transfer-encoding: chunked" in head.lower():
        out = b""
        while True:
            size, _, rest = body.partition(b"\r\n")
            length = int(size, 16)
            if not length:
                break
            out, body = out + rest[:length], rest[length + 2 :]
        body = out
    return json.loads(body)  # type: ignore[no-any-return]


async def _underscore_prefixed(nursery: trio.Nursery, storage: Storage, pki: TestPKI) -> None:
    """SECURE, protected for any user, its identity headers under `X_Auth_`."""
    port = await backend(nursery, "one")
    protection = {
        "auth_enabled": True,
        "auth_required_users": ["*"],
        "auth_header_prefix": "X_Auth_",
    }
    await serve_names(storage, pki, {SECURE: port}, **protection)


async def test_an_underscore_identity_prefix_still_strips_the_clients_dash_spelling(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI, mint: Mint
) -> None:
    """The API takes `auth_header_prefix: X_Auth_` (a token), and refuses custom headers under
    it with `_` read as `-` (tenancy/headers.canonical). The data plane strips client headers
    by the raw lower-cased prefix `x_auth_` only: a client's `X-Auth-User-Name: admin` (or
    `X-Auth_User-Name`) reaches the protected backend beside (or, behind gunicorn/nginx,
    which drop underscore names, instead of) the gateway's own `x_auth_user-name`. A
    WSGI/CGI backend reads both as HTTP_X_AUTH_USER_NAME. Client headers are now compared
    with the prefix with `_` read as `-`."""
    await _underscore_prefixed(nursery, storage, pki)
    http = gateway.http_port
    origin = f"http://{SECURE}:{http}"
    token = await mint(origin)
    request = (
        f"GET /echo HTTP/1.1\r\nHost: {SECURE}:{http}\r\nAuthorization: Bearer {token}\r\n"
        "X-Auth-User-Name: admin\r\nX-Auth_Email: root@example.com\r\n"
        "Connection: close\r\n\r\n"
    ).encode()

    async def answered() -> bytes | None:
        response = await raw_http(http, request)
        return response if response.startswith(b"HTTP/1.1 200") else None

    response = await eventually(answered, what="the protected proxy answers")
    seen = json_body(response)["headers"]
    assert isinstance(seen, dict)
    assert seen.get("x_auth_user-name") == "alice", seen  # the gateway's own
    forged = {k: v for k, v in seen.items() if k.replace("_", "-").startswith("x-auth-")}
    assert "admin" not in forged.values() and "root@example.com" not in forged.values(), forged


async def test_an_underscore_identity_prefix_still_strips_the_clients_dash_spelling_over_h2(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI, mint: Mint
) -> None:
    """The same as above, over HTTP/2 (`x-auth-user-name` is a valid lowercase h2 name)."""
    await _underscore_prefixed(nursery, storage, pki)
    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    authority = f"{SECURE}:{gateway.https_port}"
    token = await mint(f"https://{authority}")

    async def answered() -> H2Answer | None:
        answer = await client.request(
            authority,
            "/echo",
            headers=[("authorization", f"Bearer {token}"), ("x-auth-user-name", "admin")],
        )
        return answer if answer.status != 404 else None

    answer = await eventually(answered, what="the protected proxy over h2")
    assert answer.status == 200, answer
    seen = json.loads(answer.body)["headers"]
    assert seen.get("x_auth_user-name") == "alice", seen  # the gateway's own
    assert seen.get("x-auth-user-name") != "admin", seen
    await client.aclose()


CLIENT_ADDRESS_HEADERS = [
    "client-ip",  # PHP's classic HTTP_CLIENT_IP, Rails' remote_ip reads it too
    "true-client-ip",  # Akamai / Cloudflare Enterprise
    "cf-connecting-ip",  # Cloudflare
    "x-client-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",  # read by ingress-nginx
    "x-remote-ip",
    "x-remote-addr",
]


async def test_client_address_headers_of_other_balancers_do_not_reach_the_backend(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    """The gateway replaces X-Forwarded-For, X-Real-IP and Forwarded with the client it saw,
    but every other header that names "the client's address" for some balancer passes
    unchanged: a backend (or a framework or WAF in front of it) that reads `True-Client-IP`,
    `CF-Connecting-IP` or `Client-IP` (PHP's HTTP_CLIENT_IP) gets the client's own claim,
    e.g. to pass an IP allowlist or to dodge a per-address rate limit. They are dropped now."""
    port = await backend(nursery, "one")
    await serve_names(storage, pki, {SECURE: port})
    http = gateway.http_port
    forged = "".join(f"{name}: 10.0.0.1\r\n" for name in CLIENT_ADDRESS_HEADERS)
    request = f"GET /echo HTTP/1.1\r\nHost: {SECURE}\r\n{forged}Connection: close\r\n\r\n"

    async def answered() -> bytes | None:
        response = await raw_http(http, request.encode())
        return response if response.startswith(b"HTTP/1.1 200") else None

    seen = json_body(await eventually(answered, what="the proxy answers"))["headers"]
    assert isinstance(seen, dict)
    assert seen["x-real-ip"] == "127.0.0.1"
    passed = {name: seen[name] for name in CLIENT_ADDRESS_HEADERS if name in seen}
    assert passed == {}, passed


async def test_an_owner_cannot_forge_identity_headers_into_the_admins_global_route(
    world: World,
) -> None:
    """The admin's global routes apply to every proxy, owners' included, and a request an
    owner's proxy sends down one goes out with that owner's header settings: its
    `auth_header_prefix` decides which client headers are stripped, and its `custom_headers`
    are added. An owner sets `auth_header_prefix: Y-` (so `X-Auth-*` is no longer the
    gateway's on that proxy, and may be configured) and `custom_headers: {X-Auth-User-Name:
    admin}`: the admin's backend behind the global route, which trusts the gateway's
    `X-Auth-*` identity headers as every admin proxy sends them, gets `X-Auth-User-Name:
    admin`, `X-Auth-Groups: admins` from the owner (and from any anonymous client: the
    `X-Auth-*` a client sends is not stripped either). Such a route's backend now gets none of
    the owner's custom headers, and no client header under the default prefix."""
    admin_backend = world.url("marker")
    await created(
        await world.api.post(
            ROUTES,
            json={
                "route_id": "admin-tools",
                "path_pattern": "/echo/admin-tools/",
                "target_type": "url",
                "target_value": admin_backend,
                "scope": "global",
                "priority": 900,
            },
        )
    )
    host = "mallory.example.com"
    await proxy(world.alice, host, world.url("attacker"))
    # auth on, with every path excluded (so nobody needs a token) and the identity prefix moved
    await created(
        await world.alice.post(
            f"/api/v1/proxy/targets/{host}/auth",
            json={"auth_header_prefix": "Y-", "auth_excluded_paths": ["/"]},
        )
    )
    await created(
        await world.alice.put(
            f"/api/v1/proxy/targets/{host}",
            json={"custom_headers": {"X-Auth-User-Name": "admin", "X-Auth-Groups": "admins"}},
        )
    )
    await served_by(world.public, host, "attacker")

    async def routed() -> dict[str, object] | None:
        response = await world.public.get(
            "/echo/admin-tools/delete-everything",
            headers={"Host": host, "X-Auth-User-Id": "1", "X-Auth-Email": "root@example.com"},
        )
        body = response.json()
        return body if body.get("backend") == "marker" else None

    seen = (await eventually(routed, what="the admin's global route on the owner's proxy"))[
        "headers"
    ]
    assert isinstance(seen, dict)
    forged = {k: v for k, v in seen.items() if k.startswith("x-auth-")}
    assert forged == {}, forged


async def test_an_h2_head_with_more_fields_than_http11_allows_is_refused(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    """HTTP/1.1 refuses a head of more than 256 fields with a 431 (6e5d5cc: a field costs
    ~110 bytes of memory however short, and the Python work per field). The same head over
    HTTP/2 passes: HPACK lets a client send a field in one byte (an indexed static-table
    entry), so ~1,700 fields fit under the 64 KiB header-list limit; each is validated,
    rewritten and sent upstream in Python, and the backend gets every one of them. Now a 431,
    as over HTTP/1.1."""
    port = await backend(nursery, "one")
    await serve_names(storage, pki, {SECURE: port})
    http = gateway.http_port
    many = "".join(f"x-f{n}: v\r\n" for n in range(300))
    request = f"GET /echo HTTP/1.1\r\nHost: {SECURE}\r\n{many}Connection: close\r\n\r\n"

    async def refused_h1() -> bytes | None:
        response = await raw_http(http, request.encode())
        return response if not response.startswith(b"HTTP/1.1 404") else None

    h1 = await eventually(refused_h1, what="the proxy is served")
    assert h1.startswith(b"HTTP/1.1 431"), h1[:200]

    client = await connected(gateway.https_port, SECURE, pki.ca_file)
    fields = [(f"x-f{n}", "v") for n in range(300)]
    answer = await client.request(SECURE, "/echo", headers=fields)
    assert answer.status == 431, (answer.status, answer.body[:200])
    await client.aclose()
