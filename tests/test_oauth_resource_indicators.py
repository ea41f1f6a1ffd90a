"""MCP_RESOURCE_INDICATORS_ENABLED and MCP_RESOURCE_VALIDATION_STRICT through the real endpoints:
strict (the default) takes only resources the gateway protects (a proxy's origin, a registered
resource), not strict takes any absolute URI, and disabled ignores `resource` altogether."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.models.resources import ProtectedResource
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.github_standin import GitHubStandIn
from tests.jwt_text import unverified_claims
from tests.oauth_helpers import FlowClient, query_of, refused_link, start_gateway

github = oauth_helpers.github

PROXY = "mcp.example.com"
REGISTERED = "https://tools.example.net/mcp"
METADATA_PATHS = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")


@dataclass
class Gateway:
    ready: Ready
    flow: FlowClient

    @property
    def issuer(self) -> str:
        return self.ready.api_url


Start = Callable[..., Awaitable[Gateway]]
"""`await start(**settings)`: a gateway wired to the stand-in, with the proxy PROXY and the
registered resource REGISTERED, and a flow client for it."""


@pytest.fixture
async def start(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> AsyncIterator[Start]:
    async with AsyncExitStack() as clients:

        async def started(**settings: Any) -> Gateway:
            ready = await start_gateway(nursery, make_settings, github, **settings)
            target = {"hostname": PROXY, "target_url": "http://127.0.0.1:9", "auth_enabled": True}
            await storage.proxies.create(ProxyTarget.model_validate(target))
            await storage.resources.create(ProtectedResource(uri=REGISTERED, name="Tools"))
            http = await clients.enter_async_context(httpx.AsyncClient(base_url=ready.api_url))
            return Gateway(ready, FlowClient(http))

        yield started


def audience_of(token_response: dict[str, Any]) -> list[str]:
    audience: list[str] = unverified_claims(token_response["access_token"])["aud"]
    return audience


async def refused_at_authorize(flow: FlowClient, resource: str) -> dict[str, str]:
    """The error the client's redirect URI would receive (through the page that refuses the
    request) for an authorization asking for `resource`."""
    client = await flow.register()
    response = await flow.start(client["client_id"], code_challenge="x" * 43, resource=resource)
    answer = query_of(refused_link(response))
    assert "code" not in answer
    return answer


@pytest.mark.parametrize(
    "resource",
    [
        "https://mcp.example.com",
        "http://MCP.example.com:8443/mcp",
        REGISTERED,
        "https://tools.example.net/mcp/v2",
    ],
    ids=["proxy-origin", "proxy-path-any-port", "registered", "under-registered"],
)
async def test_strict_takes_resources_the_gateway_protects(
    start: Start, github: GitHubStandIn, resource: str
) -> None:
    gateway = await start()
    client = await gateway.flow.register()
    issued = await gateway.flow.tokens(client, resource=resource)
    expected = resource.replace("MCP.example.com", "mcp.example.com")
    assert audience_of(issued) == [expected]


@pytest.mark.parametrize(
    "resource",
    [
        "https://unknown.example.org",
        "https://tools.example.net/other",
        "https://tools.example.net/mcpx",
        "urn:example:mcp",
    ],
    ids=["unknown-host", "beside-registered", "prefix-is-not-a-path", "not-http"],
)
async def test_strict_refuses_other_resources_before_the_login(
    start: Start, github: GitHubStandIn, resource: str
) -> None:
    gateway = await start()
    answer = await refused_at_authorize(gateway.flow, resource)
    assert answer["error"] == "invalid_target"
    assert answer["iss"] == gateway.issuer
    assert github.logins == 0


async def test_strict_is_the_default_and_metadata_announces_indicators(start: Start) -> None:
    gateway = await start()
    assert (await refused_at_authorize(gateway.flow, "https://unknown.example.org"))["error"] == (
        "invalid_target"
    )
    for path in METADATA_PATHS:
        metadata = (await gateway.flow.http.get(path)).json()
        assert metadata["resource_indicators_supported"] is True


@pytest.mark.parametrize(
    "resource",
    ["https://unknown.example.org/mcp", "urn:example:mcp", "mcp+ws://Tools.Example.org/x?y=1"],
)
async def test_not_strict_takes_any_absolute_uri(start: Start, resource: str) -> None:
    gateway = await start(mcp_resource_validation_strict=False)
    client = await gateway.flow.register()
    issued = await gateway.flow.tokens(client, resource=resource)
    assert audience_of(issued) == [resource.replace("Tools.Example.org", "tools.example.org")]


@pytest.mark.parametrize(
    "resource", ["/mcp", "mcp.example.com", "urn:example:mcp#part", "urn:an example"]
)
async def test_not_strict_still_refuses_what_is_no_absolute_uri(
    start: Start, resource: str
) -> None:
    gateway = await start(mcp_resource_validation_strict=False)
    assert (await refused_at_authorize(gateway.flow, resource))["error"] == "invalid_target"


async def test_disabled_indicators_are_ignored_and_not_announced(
    start: Start, storage: Storage
) -> None:
    gateway = await start(mcp_resource_indicators_enabled=False)
    for path in METADATA_PATHS:
        metadata = (await gateway.flow.http.get(path)).json()
        assert metadata["resource_indicators_supported"] is False

    flow = gateway.flow
    client = await flow.register()
    authorized = await flow.authorize(
        client["client_id"], resource=["https://unknown.example.org", "not a uri#at all"]
    )
    response = await flow.exchange(client, authorized, resource="https://elsewhere.example.org")
    assert response.status_code == 200, response.text
    issued = response.json()
    assert audience_of(issued) == [gateway.issuer]
    [session] = await storage.oauth.sessions()
    assert session.resources == []

    refreshed = await flow.token(
        client,
        grant_type="refresh_token",
        refresh_token=issued["refresh_token"],
        resource="https://elsewhere.example.org",
    )
    assert refreshed.status_code == 200, refreshed.text
    assert audience_of(refreshed.json()) == [gateway.issuer]
