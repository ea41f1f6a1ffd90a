"""Which users may receive which scopes is the operator's: a dynamically registered client that
declares `mcp:admin` gets it only for users in OAUTH_ADMIN_USERS, whoever clicks approve."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.oauth.scope_policy import ScopePolicy
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.github_standin import GitHubStandIn
from tests.oauth_helpers import FlowClient, pkce_pair, query_of, start_gateway

github = oauth_helpers.github
ALL = "mcp:read mcp:write mcp:admin"


@pytest.mark.parametrize(
    ("admins", "user_scopes", "requested", "username", "granted"),
    [
        ("", "mcp:read mcp:write", ALL, "alice", "mcp:read mcp:write"),
        ("", "mcp:read mcp:write", "mcp:admin", "alice", ""),
        ("alice", "mcp:read mcp:write", ALL, "alice", ALL),
        ("alice", "mcp:read mcp:write", ALL, "bob", "mcp:read mcp:write"),
        ("Alice, carol", "mcp:read mcp:write", "mcp:admin mcp:read", "ALICE", "mcp:admin mcp:read"),
        ("*", "mcp:read", ALL, "anyone", ALL),
        ("", "mcp:read", "mcp:write mcp:read", "bob", "mcp:read"),
        ("", "", "mcp:read", "bob", ""),
        ("", "mcp:read mcp:write", "mcp:read mcp:read", "bob", "mcp:read"),
    ],
)
def test_the_scope_a_user_may_receive(
    admins: str, user_scopes: str, requested: str, username: str, granted: str
) -> None:
    assert ScopePolicy.parse(admins, user_scopes).grant(requested, username) == granted


Start = Callable[..., Any]


@pytest.fixture
async def start(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> Start:
    async def started(**settings: Any) -> Ready:
        values = {"mcp_resource_validation_strict": False, **settings}
        return await start_gateway(nursery, make_settings, github, **values)

    return started


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def flow_on(http: httpx.AsyncClient, gateway: Ready) -> FlowClient:
    http.base_url = httpx.URL(gateway.api_url)
    return FlowClient(http)


async def consent_page(flow: FlowClient, client_id: str, scope: str) -> tuple[httpx.Response, str]:
    """The consent page a user sees for `scope` (and the PKCE verifier of the request)."""
    verifier, challenge = pkce_pair()
    start = await flow.start(client_id, scope=scope, code_challenge=challenge, state="s1")
    callback = await flow.through_github(start)
    assert callback.status_code == 302, callback.text
    assert callback.headers["location"].startswith("/consent"), callback.headers["location"]
    page = await flow.http.get(callback.headers["location"])
    assert page.status_code == 200, page.text
    return page, verifier


def shown_scopes(page: httpx.Response) -> list[str]:
    return re.findall(r"<code>(mcp:[a-z]+)</code>", page.text)


async def approved_token(flow: FlowClient, client: dict[str, Any], scope: str) -> dict[str, Any]:
    page, verifier = await consent_page(flow, client["client_id"], scope)
    reached = await flow.consent(page)
    answer = query_of(reached.headers["location"])
    response = await flow.token(
        client,
        grant_type="authorization_code",
        code=answer["code"],
        redirect_uri=oauth_helpers.REDIRECT_URI,
        code_verifier=verifier,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_registered_client_declaring_admin_does_not_get_it_for_a_plain_user(
    start: Start, http: httpx.AsyncClient
) -> None:
    gateway = await start()
    flow = flow_on(http, gateway)
    client = await flow.register(scope=ALL)
    page, _ = await consent_page(flow, client["client_id"], ALL)
    assert shown_scopes(page) == ["mcp:read", "mcp:write"]  # the page shows what is granted
    token = await approved_token(flow, client, ALL)
    assert token["scope"] == "mcp:read mcp:write"
    introspected = await flow.http.post(
        "/introspect",
        data={"token": token["access_token"], "client_id": client["client_id"],
              "client_secret": client["client_secret"]},
    )  # fmt: skip
    assert introspected.json()["scope"] == "mcp:read mcp:write"


async def test_asking_only_for_admin_as_a_plain_user_is_denied(
    start: Start, http: httpx.AsyncClient, storage: Storage
) -> None:
    gateway = await start()
    flow = flow_on(http, gateway)
    client = await flow.register(scope=ALL)
    started = await flow.start(
        client["client_id"], scope="mcp:admin", code_challenge=pkce_pair()[1]
    )
    callback = await flow.through_github(started)
    assert callback.status_code == 302, callback.text
    answer = query_of(callback.headers["location"])
    assert answer["error"] == "access_denied"
    assert "mcp:admin" in answer["error_description"]
    assert not await storage.redis.keys("oauth:consent:*")


async def test_an_admin_user_receives_admin_until_taken_off_the_list(
    start: Start, http: httpx.AsyncClient, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start(oauth_admin_users="Alice")
    flow = flow_on(http, gateway)
    client = await flow.register(scope=ALL)
    page, _ = await consent_page(flow, client["client_id"], ALL)
    assert shown_scopes(page) == ["mcp:read", "mcp:write", "mcp:admin"]
    token = await approved_token(flow, client, ALL)
    assert token["scope"] == ALL
    # the same sessions, read by a replica whose policy no longer lists alice
    other = await start(oauth_admin_users="", oauth_issuer=gateway.api_url)
    refreshed = await flow_on(http, other).token(
        client, grant_type="refresh_token", refresh_token=token["refresh_token"]
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == "mcp:read mcp:write"


def test_by_default_nobody_receives_admin() -> None:
    settings = Settings(_env_file=None)
    assert (settings.oauth_admin_users, settings.oauth_user_scopes) == ("", "mcp:read mcp:write")
    assert ScopePolicy.of(settings).grant(ALL, "alice") == "mcp:read mcp:write"
