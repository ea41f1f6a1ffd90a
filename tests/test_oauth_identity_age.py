"""A refresh under a policy that checks GitHub organisations, teams or emails is refused once
what GitHub said at the login is older than OAUTH_IDENTITY_MAX_AGE.

The identity (emails, organisations, teams) is read from GitHub once, at the login; a refresh
checked the proxies' allowlists as they are now, but against that identity. So a user taken out
of the organisation a proxy requires kept refreshing (and kept a `groups` claim naming it) for
the refresh token's whole life, a year by default: only a new login asks GitHub again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.github_standin import GitHubStandIn, GitHubUser
from tests.oauth_helpers import FlowClient

github = oauth_helpers.github

TEAM = "team.example.com"
"""A proxy that lets in the members of the GitHub organisation acme."""
OPEN = "open.example.com"
"""A proxy that lets in every GitHub user: it checks nothing GitHub can change."""
MAX_AGE = 4
"""OAUTH_IDENTITY_MAX_AGE in these tests: long enough for a login and its first checks on a
loaded CI machine (at 1 s, a login there was already stale by its first check), short enough
to wait out."""


async def _proxies(storage: Storage) -> None:
    common: dict[str, Any] = {"target_url": "http://127.0.0.1:9", "auth_enabled": True}
    await storage.proxies.create(
        ProxyTarget.model_validate(
            common
            | {"hostname": TEAM, "auth_required_users": ["*"], "auth_required_groups": ["acme"]}
        )
    )
    await storage.proxies.create(
        ProxyTarget.model_validate(common | {"hostname": OPEN, "auth_required_users": ["*"]})
    )


async def _refresh(flow: FlowClient, client: dict[str, Any], token: str) -> httpx.Response:
    return await flow.token(client, grant_type="refresh_token", refresh_token=token)


async def test_a_user_taken_out_of_the_organisation_refreshes_no_more_after_the_max_age(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    await _proxies(storage)
    github.user = GitHubUser(7, "alice", ["alice@acme.test"], orgs=["acme"])
    ready = await oauth_helpers.start_gateway(
        nursery, make_settings, github, oauth_identity_max_age=MAX_AGE
    )
    async with httpx.AsyncClient(base_url=ready.api_url) as http:
        flow = FlowClient(http)
        client = await flow.register()
        tokens = await flow.tokens(client, resource=f"https://{TEAM}")
        fresh = await _refresh(flow, client, tokens["refresh_token"])
        assert fresh.status_code == 200, fresh.text  # while the login is recent

        github.user = GitHubUser(7, "alice", ["alice@acme.test"], orgs=[])  # taken out
        await trio.sleep(MAX_AGE + 0.2)
        stale = await _refresh(flow, client, fresh.json()["refresh_token"])
        assert stale.status_code == 400, stale.text
        assert stale.json()["error"] == "invalid_grant"
        assert "OAUTH_IDENTITY_MAX_AGE" in stale.json()["error_description"]

        # the next login asks GitHub, which no longer names acme
        _, challenge = oauth_helpers.pkce_pair()
        start = await flow.start(
            client["client_id"], code_challenge=challenge, resource=f"https://{TEAM}"
        )
        answer = await flow.approve(start)
        assert answer.status_code == 403, (answer.status_code, answer.headers.get("location"))


async def test_what_checks_no_github_membership_refreshes_on_and_zero_means_no_limit(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    await _proxies(storage)
    github.user = GitHubUser(7, "alice", ["alice@acme.test"], orgs=["acme"])
    limited = await oauth_helpers.start_gateway(
        nursery, make_settings, github, oauth_identity_max_age=MAX_AGE
    )
    unlimited = await oauth_helpers.start_gateway(
        nursery, make_settings, github, oauth_identity_max_age=0
    )
    async with (
        httpx.AsyncClient(base_url=limited.api_url) as first,
        httpx.AsyncClient(base_url=unlimited.api_url) as second,
    ):
        open_flow, team_flow = FlowClient(first), FlowClient(second)
        open_client, team_client = await open_flow.register(), await team_flow.register()
        open_tokens = await open_flow.tokens(open_client, resource=f"https://{OPEN}")
        team_tokens = await team_flow.tokens(team_client, resource=f"https://{TEAM}")
        await trio.sleep(MAX_AGE + 0.2)
        for flow, client, tokens in (
            (open_flow, open_client, open_tokens),
            (team_flow, team_client, team_tokens),
        ):
            refreshed = await _refresh(flow, client, tokens["refresh_token"])
            assert refreshed.status_code == 200, refreshed.text


async def test_a_stale_login_passes_no_group_proxy_through_an_extra_audience(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    """A proxy that requires acme and accepts the open proxy's tokens as an extra audience
    (`auth_allowed_audiences`) checked their `groups` claim, which every refresh copies from the
    login: the refresh of an open proxy's token is not refused (its policy reads no identity),
    so a user taken out of acme kept passing the acme-only proxy. The token now says when the
    login was (`auth_time`), and a policy that checks groups or emails refuses it past the max
    age: on the data plane and at /verify alike."""
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {
                "hostname": "gate.example.com",
                "target_url": "http://127.0.0.1:9",
                "auth_enabled": True,
                "auth_required_users": ["*"],
                "auth_required_groups": ["acme"],
                "auth_allowed_audiences": [f"https://{OPEN}"],
            }
        )
    )
    await _proxies(storage)
    github.user = GitHubUser(7, "alice", ["alice@acme.test"], orgs=["acme"])
    ready = await oauth_helpers.start_gateway(
        nursery, make_settings, github, oauth_identity_max_age=MAX_AGE
    )

    async def passes(token: str) -> tuple[int, int]:
        bearer = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient() as plain:
            data_plane = await plain.get(
                f"http://127.0.0.1:{ready.http_port}/",
                headers={"Host": "gate.example.com", **bearer},
            )
        verify = await http.get(
            "/verify", headers={"X-Forwarded-Host": "gate.example.com", **bearer}
        )
        return data_plane.status_code, verify.status_code

    async with httpx.AsyncClient(base_url=ready.api_url) as http:
        flow = FlowClient(http)
        client = await flow.register()
        tokens = await flow.tokens(client, resource=f"https://{OPEN}")
        # while the login is recent, the group proxy lets the token through (502: no backend)
        assert await passes(tokens["access_token"]) == (502, 200)

        github.user = GitHubUser(7, "alice", ["alice@acme.test"], orgs=[])  # taken out
        await trio.sleep(MAX_AGE + 0.2)
        fresh = await _refresh(flow, client, tokens["refresh_token"])
        assert fresh.status_code == 200, fresh.text  # the open proxy's policy reads no identity
        assert await passes(fresh.json()["access_token"]) == (401, 401)
