"""End to end with the official MCP Python SDK: an MCP server built with the SDK (a subprocess)
behind an auth-enabled proxy of a real gateway, on a real Redis, with the GitHub stand-in.

The SDK's own OAuth client (`OAuthClientProvider`) finds the protected-resource metadata from the
proxy's 401, then the authorization server's metadata, gets a client (dynamic registration, a
pre-registered client, or a Client ID Metadata Document), sends the user's browser (walked
headlessly here: /authorize, GitHub, /callback, the consent form) and exchanges the code with PKCE
and `resource`; then it lists and calls tools through the proxy.

The authorization server is the gateway's admin API on its public port (`localhost`). The proxies
are named under `.localhost`, which the system resolver may not know: the SDK's HTTP client gets a
transport that connects to 127.0.0.1 whatever the URL's host, keeping the `Host` header and one
connection pool per origin, as with real DNS.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2
import pytest
import trio
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl

from oauthproxy.models.oauth import OAuthClient
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.proxy.login import GATEWAY_CLIENT_ID
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import document_server, oauth_helpers
from tests.conftest import free_port, project_root, wait_for_port
from tests.document_server import DocumentServer
from tests.eventually import eventually
from tests.github_standin import GitHubStandIn, GitHubUser
from tests.jwt_text import unverified_claims
from tests.oauth_helpers import REDIRECT_URI, FlowClient, query_of, start_gateway
from tests.tls import TestPKI

HOST = "mcp.localhost"
OTHER = "other.localhost"
"""A second protected proxy in front of the same MCP server: another resource."""
ADMIN = "admin.localhost"
"""A third one, which requires the `mcp:admin` scope."""
PROXIES: dict[str, dict[str, Any]] = {
    HOST: {},
    OTHER: {},
    ADMIN: {"auth_allowed_scopes": ["mcp:admin"]},
}

github = oauth_helpers.github
pki = document_server.pki
documents = document_server.documents


class LoopbackTransport(httpx2.AsyncBaseTransport):
    """Connects to 127.0.0.1 for any host; the request (and its `Host` header) is unchanged, and
    each origin keeps connections of its own."""

    def __init__(self) -> None:
        self._origins: dict[tuple[str, str, int | None], httpx2.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        origin = (url.scheme, url.host, url.port)
        transport = self._origins.setdefault(origin, httpx2.AsyncHTTPTransport())
        rerouted = httpx2.Request(
            request.method,
            url.copy_with(host="127.0.0.1"),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await transport.handle_async_request(rerouted)

    async def aclose(self) -> None:
        for transport in self._origins.values():
            await transport.aclose()


@dataclass
class MemoryTokens:
    """The SDK's TokenStorage, in memory."""

    tokens: OAuthToken | None = None
    client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class LoginStopped(Exception):
    """The browser did not come back to the client with a code."""


@dataclass
class Browser:
    """The user's browser, for the SDK's redirect and callback handlers."""

    flow: FlowClient
    opened: list[str] = field(default_factory=list)
    """The authorization URLs the SDK sent the user to."""
    landed: httpx.Response | None = None
    """The last answer of the walk: the redirect to the client, or the page that stopped it."""

    async def open(self, authorization_url: str) -> None:
        self.opened.append(authorization_url)
        self.landed = await self.flow.approve(await self.flow.http.get(authorization_url))

    async def come_back(self) -> AuthorizationCodeResult:
        assert self.landed is not None
        location = self.landed.headers.get("location", "")
        if not location.startswith(REDIRECT_URI + "?"):
            raise LoginStopped(self.landed.status_code, self.landed.text)
        answer = query_of(location)
        return AuthorizationCodeResult(
            code=answer["code"], state=answer.get("state"), iss=answer.get("iss")
        )

    def consented(self) -> bool:
        """Whether the walk went through the consent form (its answer is a 303)."""
        return self.landed is not None and self.landed.status_code == 303


@dataclass
class World:
    gateway: Ready
    storage: Storage
    github: GitHubStandIn
    http: httpx.AsyncClient
    """The user's browser session with the authorization server (keeps cookies)."""

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.gateway.http_port}"

    def origin(self, hostname: str = HOST) -> str:
        return f"http://{hostname}:{self.gateway.http_port}"

    def mcp_url(self, hostname: str = HOST) -> str:
        return f"{self.origin(hostname)}/mcp"

    def browser(self) -> Browser:
        return Browser(FlowClient(self.http))

    def provider(
        self, tokens: MemoryTokens, browser: Browser, *, hostname: str = HOST, **options: Any
    ) -> OAuthClientProvider:
        metadata = OAuthClientMetadata(
            client_name="SDK end-to-end client",
            redirect_uris=[AnyUrl(REDIRECT_URI)],
            grant_types=["authorization_code", "refresh_token"],
        )
        return OAuthClientProvider(
            self.mcp_url(hostname),
            metadata,
            tokens,
            redirect_handler=browser.open,
            callback_handler=browser.come_back,
            **options,
        )


@dataclass(frozen=True)
class ToolRun:
    tools: list[str]
    added: Any
    identity: dict[str, str]


def mcp_client(auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(auth=auth, transport=LoopbackTransport(), timeout=10)


async def use_tools(url: str, auth: httpx2.Auth) -> ToolRun:
    """Initialize a session with the MCP server at `url`, list its tools and call two."""
    with trio.fail_after(20):
        async with (
            mcp_client(auth) as http,
            streamable_http_client(url, http_client=http) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            await session.initialize()
            listed = await session.list_tools()
            added = await session.call_tool("add", {"a": 2, "b": 3})
            who = await session.call_tool("whoami", {})
    assert not added.is_error and not who.is_error
    return ToolRun(
        sorted(tool.name for tool in listed.tools),
        added.structured_content,
        who.structured_content or {},
    )


def claims_of(token: OAuthToken | None) -> dict[str, Any]:
    """The payload of the access token (the proxy verified its signature)."""
    assert token is not None
    return unverified_claims(token.access_token)


async def serve_mcp(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """The SDK's MCP server as a subprocess on a free port; stopped when cancelled."""
    port = free_port()
    command = [sys.executable, "-m", "tests.mcp_server", str(port), *PROXIES]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(trio.run_process, command, cwd=project_root(), check=False)
        )
        await wait_for_port(port)
        task_status.started(port)


async def until_protected(hostname: str, gateway: Ready) -> None:
    """Wait until the gateway serves the new proxy (it learns of it through Redis)."""
    url = f"http://{hostname}:{gateway.http_port}/mcp"
    async with mcp_client() as client:

        async def protected() -> bool:
            return (await client.post(url, json={})).status_code == 401

        await eventually(protected, what=f"{hostname} protected")


@pytest.fixture
async def world(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
    pki: TestPKI,
) -> AsyncIterator[World]:
    """The MCP server behind the auth-enabled PROXIES of a gateway whose authorization server is
    `http://localhost:<HTTP_PORT>`. Only the proxies' allowlists let alice in (the global one is
    empty)."""
    backend: int = await nursery.start(serve_mcp)
    http_port = free_port()
    gateway = await start_gateway(
        nursery,
        make_settings,
        github,
        http_port=http_port,
        oauth_issuer=f"http://localhost:{http_port}",
        oauth_allowed_github_users="",
        oauth_admin_users="alice",  # the ADMIN proxy's mcp:admin is hers to receive
        oauth_cimd_allow_loopback=True,
        oauth_ca_bundle=pki.ca_file,
    )
    for hostname, settings in PROXIES.items():
        target = {
            "hostname": hostname,
            "target_url": f"http://127.0.0.1:{backend}",
            "auth_enabled": True,
            "auth_required_users": ["alice"],
            **settings,
        }
        await storage.proxies.create(ProxyTarget.model_validate(target))
        await until_protected(hostname, gateway)
    async with httpx.AsyncClient(base_url=f"http://localhost:{http_port}", timeout=10) as http:
        yield World(gateway, storage, github, http)


async def registered_clients(world: World) -> list[OAuthClient]:
    """The clients registered by MCP clients (not the gateway's own browser-login client)."""
    clients = await world.storage.oauth.clients()
    return [c for c in clients if c.client_id != GATEWAY_CLIENT_ID]


def assert_tools_worked(run: ToolRun) -> None:
    assert run.tools == ["add", "whoami"]
    assert run.added == {"result": 5}
    assert run.identity["x-auth-user-name"] == "alice"
    assert run.identity["x-auth-user-id"] == "github-1001"


async def test_dynamic_registration_then_tools(world: World) -> None:
    tokens, browser = MemoryTokens(), world.browser()
    provider = world.provider(tokens, browser)
    run = await use_tools(world.mcp_url(), provider)
    assert_tools_worked(run)

    (opened,) = browser.opened
    assert opened.startswith(f"{world.issuer}/authorize?")
    asked = query_of(opened)
    assert asked["resource"] == world.origin()
    assert asked["code_challenge_method"] == "S256"
    assert browser.consented()

    assert tokens.client_info is not None
    client_id = tokens.client_info.client_id
    registered = await registered_clients(world)
    assert [client.client_id for client in registered] == [client_id]
    claims = claims_of(tokens.tokens)
    assert claims["iss"] == world.issuer
    assert claims["aud"] == [world.origin()]
    assert claims["azp"] == client_id
    assert claims["username"] == "alice"

    # when the SDK's clock says the access token expired, it uses the refresh token (rotated)
    first = tokens.tokens
    assert first is not None and first.refresh_token
    provider.context.token_expiry_time = time.time() - 1
    assert_tools_worked(await use_tools(world.mcp_url(), provider))
    assert len(browser.opened) == 1
    assert tokens.tokens is not None
    assert tokens.tokens.refresh_token not in (None, first.refresh_token)
    assert claims_of(tokens.tokens)["jti"] != claims["jti"]
    assert claims_of(tokens.tokens)["aud"] == [world.origin()]
    (session,) = await world.storage.oauth.sessions_of_client(client_id)
    assert len(await world.storage.oauth.tokens_of_session(session.session_id)) == 2


async def test_pre_registered_client_then_tools(world: World) -> None:
    registered = await FlowClient(world.http).register(client_name="Pre-registered")
    tokens = MemoryTokens(client_info=OAuthClientInformationFull.model_validate(registered))
    browser = world.browser()
    run = await use_tools(world.mcp_url(), world.provider(tokens, browser))
    assert_tools_worked(run)

    assert query_of(browser.opened[0])["client_id"] == registered["client_id"]
    assert browser.consented()
    assert [c.client_id for c in await registered_clients(world)] == [registered["client_id"]]
    assert claims_of(tokens.tokens)["azp"] == registered["client_id"]


async def test_client_id_metadata_document_then_tools(
    world: World, documents: DocumentServer
) -> None:
    url = documents.publish("sdk-client.json", client_name="SDK document client")
    tokens, browser = MemoryTokens(), world.browser()
    provider = world.provider(tokens, browser, client_metadata_url=url)
    run = await use_tools(world.mcp_url(), provider)
    assert_tools_worked(run)

    assert query_of(browser.opened[0])["client_id"] == url
    assert browser.consented()
    assert documents.fetches >= 1
    assert await registered_clients(world) == []
    assert claims_of(tokens.tokens)["azp"] == url


async def test_a_token_for_another_resource_is_refused(world: World) -> None:
    tokens, browser = MemoryTokens(), world.browser()
    assert_tools_worked(await use_tools(world.mcp_url(), world.provider(tokens, browser)))
    assert tokens.tokens is not None
    bearer = {"Authorization": f"Bearer {tokens.tokens.access_token}"}
    async with mcp_client() as client:
        refused = await client.post(world.mcp_url(OTHER), json={}, headers=bearer)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "the token is not meant for this resource"
    challenge = refused.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    assert f'resource_metadata="{world.origin(OTHER)}/.well-known/' in challenge

    # the SDK, holding that token, authorizes again for the other resource and gets through
    other = world.provider(tokens, browser, hostname=OTHER)
    assert_tools_worked(await use_tools(world.mcp_url(OTHER), other))
    assert query_of(browser.opened[-1])["resource"] == world.origin(OTHER)
    assert claims_of(tokens.tokens)["aud"] == [world.origin(OTHER)]


async def test_a_user_outside_the_allowlist_never_gets_a_code(world: World) -> None:
    world.github.user = GitHubUser(2002, "mallory", ["mallory@example.com"])
    tokens, browser = MemoryTokens(), world.browser()
    with pytest.RaisesGroup(LoginStopped, flatten_subgroups=True, allow_unwrapped=True):
        await use_tools(world.mcp_url(), world.provider(tokens, browser))

    assert world.github.logins == 1
    assert browser.landed is not None
    assert browser.landed.status_code == 403
    assert "mallory is not in the allowlist of proxy mcp.localhost" in browser.landed.text
    assert "location" not in browser.landed.headers
    assert not await world.storage.redis.keys("oauth:code*")
    assert tokens.tokens is None


async def test_a_scope_the_proxy_requires_is_asked_for_from_the_start(world: World) -> None:
    async with mcp_client() as client:
        unauthorized = await client.post(world.mcp_url(ADMIN), json={})
    assert 'scope="mcp:admin"' in unauthorized.headers["www-authenticate"]

    tokens, browser = MemoryTokens(), world.browser()
    run = await use_tools(world.mcp_url(ADMIN), world.provider(tokens, browser, hostname=ADMIN))
    assert_tools_worked(run)
    assert len(browser.opened) == 1
    assert query_of(browser.opened[0])["scope"] == "mcp:admin"
    assert claims_of(tokens.tokens)["scope"] == "mcp:admin"
