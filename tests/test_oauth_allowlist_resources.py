"""Who may log in is decided for every resource a token will be for.

A login names proxies (`proxy_hostname`, and the hosts of its `resource`s): each proxy's
allowlist applies. A resource with no proxy in front of it (a registered one) is under the
global `OAUTH_ALLOWED_GITHUB_USERS`. It used to be checked only when the request named no
proxy at all, so naming a tenant's proxy that lets everyone in next to a registered resource
gave a user the global allowlist refuses a token for that resource.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.models.resources import ProtectedResource
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.github_standin import GitHubStandIn, GitHubUser
from tests.oauth_helpers import FlowClient

github = oauth_helpers.github

REGISTERED = "https://tools.example.net"
"""A registered resource, with no proxy in front of it."""
OPEN = "open.example.com"
"""A tenant's proxy that lets every GitHub user in."""


@pytest.fixture
async def flow(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> AsyncIterator[FlowClient]:
    """OAUTH_ALLOWED_GITHUB_USERS is alice (the tests' default); mallory logs in."""
    ready = await oauth_helpers.start_gateway(nursery, make_settings, github)
    await storage.resources.create(ProtectedResource(uri=REGISTERED, name="Tools"))
    target = {"hostname": OPEN, "target_url": "http://127.0.0.1:9", "auth_enabled": True}
    await storage.proxies.create(
        ProxyTarget.model_validate(target | {"auth_required_users": ["*"]})
    )
    github.user = GitHubUser(666, "mallory", ["mallory@evil.test"])
    async with httpx.AsyncClient(base_url=ready.api_url) as http:
        yield FlowClient(http)


@pytest.mark.parametrize(
    "named",
    [
        pytest.param({"resource": REGISTERED}, id="the-resource-alone"),
        pytest.param({"resource": [REGISTERED, f"https://{OPEN}"]}, id="beside-an-open-proxy"),
        pytest.param({"resource": REGISTERED, "proxy_hostname": OPEN}, id="through-proxy-hostname"),
    ],
)
async def test_a_user_the_global_allowlist_refuses_gets_no_token_for_a_registered_resource(
    flow: FlowClient, named: dict[str, object]
) -> None:
    client = await flow.register()
    _, challenge = oauth_helpers.pkce_pair()
    start = await flow.start(client["client_id"], code_challenge=challenge, **named)
    answer = await flow.approve(start)
    assert answer.status_code == 403, (answer.status_code, answer.headers.get("location"))
    assert "mallory" in answer.text


async def test_the_open_proxy_alone_still_lets_everyone_in(flow: FlowClient) -> None:
    client = await flow.register()
    _, challenge = oauth_helpers.pkce_pair()
    start = await flow.start(
        client["client_id"], code_challenge=challenge, resource=f"https://{OPEN}"
    )
    answer = await flow.approve(start)
    assert answer.status_code in (302, 303), answer.text
    assert "code=" in answer.headers["location"]


async def test_a_user_taken_off_the_allowlist_refreshes_no_more(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    """alice logs in while OAUTH_ALLOWED_GITHUB_USERS lets her; the operator takes her off (a
    restart with the new setting, the same Redis). Her refresh token kept giving her tokens for
    its whole life (a year by default): only the scope policy was applied again."""
    first = await oauth_helpers.start_gateway(nursery, make_settings, github)
    await storage.resources.create(ProtectedResource(uri=REGISTERED, name="Tools"))
    async with httpx.AsyncClient(base_url=first.api_url) as http:
        flow = FlowClient(http)
        client = await flow.register()
        tokens = await flow.tokens(client, resource=REGISTERED)
        again = await flow.token(
            client, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
        )
        assert again.status_code == 200, again.text  # while she is allowed
    second = await oauth_helpers.start_gateway(
        nursery, make_settings, github, oauth_allowed_github_users="bob"
    )
    async with httpx.AsyncClient(base_url=second.api_url) as http:
        refreshed = await FlowClient(http).token(
            client, grant_type="refresh_token", refresh_token=again.json()["refresh_token"]
        )
    assert refreshed.status_code == 400, refreshed.text
    assert refreshed.json()["error"] == "invalid_grant"
