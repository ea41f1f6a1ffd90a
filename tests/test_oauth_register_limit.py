"""The open registration endpoint is limited per client address (OAUTH_REGISTER_RATE_LIMIT in
OAUTH_REGISTER_RATE_WINDOW seconds), counted in Redis: straight to the API, and through the public
port, where only a trusted proxy's X-Forwarded-For says who the client is."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.models.oauth import ClientOrigin
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.oauth.client_address import client_address
from oauthproxy.proxy.headers import parse_networks
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.eventually import eventually
from tests.github_standin import GitHubStandIn
from tests.oauth_helpers import REDIRECT_URI, start_gateway

github = oauth_helpers.github

CLIENT = {"client_name": "Limited", "redirect_uris": [REDIRECT_URI]}

Start = Callable[..., Awaitable[Ready]]
"""`await start(**settings)`: a gateway wired to the GitHub stand-in, on an emptied Redis."""


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "expected"),
    [
        ("203.0.113.5", ["6.6.6.6"], [], "203.0.113.5"),
        ("127.0.0.1", [], [], "127.0.0.1"),
        ("127.0.0.1", ["198.51.100.7"], [], "198.51.100.7"),
        ("127.0.0.1", ["6.6.6.6, 198.51.100.7"], [], "198.51.100.7"),
        ("127.0.0.1", ["6.6.6.6", "198.51.100.7"], [], "198.51.100.7"),
        ("127.0.0.1", ["6.6.6.6, 10.0.0.2"], ["10.0.0.0/8"], "6.6.6.6"),
        ("10.0.0.2", ["6.6.6.6"], ["10.0.0.0/8"], "6.6.6.6"),
        ("10.0.0.2", ["10.0.0.3"], ["10.0.0.0/8"], "10.0.0.3"),
        ("10.0.0.2", [], ["10.0.0.0/8"], "10.0.0.2"),
        ("127.0.0.1", ["unknown, 198.51.100.7"], [], "198.51.100.7"),
        ("127.0.0.1", ["198.51.100.7, unknown"], [], "127.0.0.1"),
        ("::1", ["2001:db8::1"], [], "2001:db8::1"),
    ],
    ids=[
        "untrusted-peer-is-the-client",
        "loopback-without-header",
        "the-gateways-own-hop",
        "only-the-gateways-entry",
        "several-headers",
        "trusted-hops-are-skipped",
        "trusted-peer",
        "all-trusted-leftmost",
        "trusted-peer-without-header",
        "garbage-left-of-the-client",
        "garbage-at-the-right",
        "ipv6",
    ],
)
def test_client_address(
    peer: str, forwarded_for: list[str], trusted: list[str], expected: str
) -> None:
    assert client_address(peer, forwarded_for, parse_networks(trusted)) == expected


@pytest.fixture
async def start(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> Start:
    async def started(**settings: Any) -> Ready:
        return await start_gateway(nursery, make_settings, github, **settings)

    return started


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A client that opens a new connection per request (the public port gives a connection to
    the hostname of its first request)."""
    async with httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        yield client


async def dynamic_clients(storage: Storage) -> int:
    return sum(client.origin == ClientOrigin.DYNAMIC for client in await storage.oauth.clients())


def assert_limited(response: httpx.Response, window: int) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= window
    body = response.json()
    assert body["error"] == "too_many_requests"
    assert "registrations" in body["error_description"]
    assert response.headers["cache-control"] == "no-store"


async def test_registrations_over_the_limit_get_429_with_retry_after(
    start: Start, http: httpx.AsyncClient, storage: Storage
) -> None:
    gateway = await start(oauth_register_rate_limit=2, oauth_register_rate_window=600)
    register = f"{gateway.api_url}/register"
    for _ in range(2):
        assert (await http.post(register, json=CLIENT)).status_code == 201
    assert_limited(await http.post(register, json=CLIENT), 600)
    assert_limited(await http.post(register, json={"redirect_uris": []}), 600)  # counted first
    assert await dynamic_clients(storage) == 2


async def test_registrations_work_again_after_the_window(
    start: Start, http: httpx.AsyncClient
) -> None:
    gateway = await start(oauth_register_rate_limit=1, oauth_register_rate_window=1)
    register = f"{gateway.api_url}/register"
    with trio.fail_after(20):
        while (refused := await http.post(register, json=CLIENT)).status_code != 429:
            assert refused.status_code == 201, refused.text
        assert_limited(refused, 1)
        while (again := await http.post(register, json=CLIENT)).status_code != 201:
            assert_limited(again, 1)
            await trio.sleep(0.1)


async def test_the_limit_can_be_turned_off(start: Start, http: httpx.AsyncClient) -> None:
    gateway = await start(oauth_register_rate_limit=0, oauth_register_rate_window=600)
    for _ in range(5):
        response = await http.post(f"{gateway.api_url}/register", json=CLIENT)
        assert response.status_code == 201, response.text


async def register_through_the_port(
    http: httpx.AsyncClient, gateway: Ready, forwarded_for: str, host: str = "localhost"
) -> httpx.Response:
    """POST /register on the public HTTP port for `host` (an API hostname, or a proxy to the
    API), claiming `forwarded_for`."""
    return await http.post(
        f"http://127.0.0.1:{gateway.http_port}/register",
        json=CLIENT,
        headers={"Host": host, "X-Forwarded-For": forwarded_for},
    )


AUTH_HOST = "auth.example.com"


async def proxy_to_the_api(http: httpx.AsyncClient, storage: Storage, gateway: Ready) -> None:
    """A proxy for AUTH_HOST to the admin API, as `oauth-routes-setup` makes one: remote clients
    reach the authorization server through it (the API hostnames answer loopback clients only)."""
    target = {"hostname": AUTH_HOST, "target_url": gateway.api_url}
    await storage.proxies.create(ProxyTarget.model_validate(target))
    health = f"http://127.0.0.1:{gateway.http_port}/health"

    async def known() -> bool:
        return (await http.get(health, headers={"Host": AUTH_HOST})).status_code != 404

    await eventually(known, what=f"{AUTH_HOST} known")


async def test_through_the_public_port_a_client_cannot_claim_another_address(
    start: Start, http: httpx.AsyncClient
) -> None:
    gateway = await start(oauth_register_rate_limit=1, oauth_register_rate_window=600)
    first = await register_through_the_port(http, gateway, "198.51.100.1")
    assert first.status_code == 201, first.text
    assert_limited(await register_through_the_port(http, gateway, "198.51.100.2"), 600)


async def test_a_trusted_proxy_names_the_client(
    start: Start, http: httpx.AsyncClient, storage: Storage
) -> None:
    gateway = await start(
        oauth_register_rate_limit=1, oauth_register_rate_window=600, trusted_proxies=["127.0.0.1"]
    )
    await proxy_to_the_api(http, storage, gateway)
    first = await register_through_the_port(http, gateway, "198.51.100.1", AUTH_HOST)
    assert first.status_code == 201, first.text
    assert_limited(await register_through_the_port(http, gateway, "198.51.100.1", AUTH_HOST), 600)
    other = await register_through_the_port(http, gateway, "198.51.100.2", AUTH_HOST)
    assert other.status_code == 201, other.text
    direct = await http.post(f"{gateway.api_url}/register", json=CLIENT)
    assert direct.status_code == 201, direct.text


async def test_an_ipv6_client_counts_by_its_64(start: Start, http: httpx.AsyncClient) -> None:
    """One host usually holds a whole IPv6 /64: counted per address, it could register without
    limit by changing its source address. (The loopback peer is the gateway's own hop, so the
    API believes its X-Forwarded-For: `register_through_the_port` without the port.)"""
    gateway = await start(oauth_register_rate_limit=1, oauth_register_rate_window=600)
    register = f"{gateway.api_url}/register"

    async def from_address(address: str) -> httpx.Response:
        return await http.post(register, json=CLIENT, headers={"X-Forwarded-For": address})

    assert (await from_address("2001:db8:1:2::1")).status_code == 201
    assert_limited(await from_address("2001:db8:1:2::2"), 600)
    assert_limited(await from_address("2001:db8:1:2:ffff:ffff:ffff:ffff"), 600)
    assert (await from_address("2001:db8:1:3::1")).status_code == 201
    assert (await from_address("198.51.100.9")).status_code == 201
    assert_limited(await from_address("::ffff:198.51.100.9"), 600)  # IPv4, spelled as IPv6
