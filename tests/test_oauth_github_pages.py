"""Organisation and team memberships on later pages of GitHub's lists count: the login follows
the `Link: rel="next"` pages of the stand-in (100 entries a page, like GitHub), up to a bound, and
only on GitHub's own origin."""

from __future__ import annotations

import httpx

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.oauth.github import MAX_PAGES
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.github_standin import GitHubStandIn, GitHubUser
from tests.oauth_helpers import FlowClient

github = oauth_helpers.github
oauth_gateway = oauth_helpers.oauth_gateway
flow = oauth_helpers.flow

HOST = "team.example.com"


def orgs(count: int) -> list[str]:
    return [f"org-{number:04}" for number in range(count)]


def teams(count: int) -> list[tuple[str, str]]:
    return [("other", f"team-{number:04}") for number in range(count)]


async def login(flow: FlowClient, storage: Storage, group: str) -> httpx.Response:
    """The callback's answer for the stand-in's user at a proxy that requires `group`."""
    target = {
        "hostname": HOST,
        "target_url": "http://127.0.0.1:9",
        "auth_required_users": ["*"],
        "auth_required_groups": [group],
    }
    await storage.proxies.create(ProxyTarget.model_validate(target))
    client = await flow.register()
    start = await flow.start(client["client_id"], code_challenge="x" * 43, proxy_hostname=HOST)
    return await flow.through_github(start)


def assert_allowed(callback: httpx.Response) -> None:
    assert callback.status_code == 302, callback.text
    assert callback.headers["location"].startswith("/consent")


def assert_refused(callback: httpx.Response) -> None:
    assert callback.status_code == 403, callback.text
    assert "none of the groups" in callback.text


async def test_an_organisation_on_the_third_page_counts(
    flow: FlowClient, github: GitHubStandIn, storage: Storage
) -> None:
    github.user = GitHubUser(11, "erin", ["erin@example.com"], orgs=[*orgs(249), "acme"])
    assert_allowed(await login(flow, storage, "acme"))
    assert github.pages_served.count("/user/orgs?page=3") == 1
    assert "/user/orgs?page=4" not in github.pages_served


async def test_a_team_on_the_second_page_counts(
    flow: FlowClient, github: GitHubStandIn, storage: Storage
) -> None:
    members = teams(150)
    members[120] = ("acme", "ops")
    github.user = GitHubUser(12, "frank", ["frank@example.com"], orgs=orgs(3), teams=members)
    assert_allowed(await login(flow, storage, "acme/ops"))
    assert "/user/teams?page=2" in github.pages_served


async def test_a_group_on_no_page_is_refused(
    flow: FlowClient, github: GitHubStandIn, storage: Storage
) -> None:
    github.user = GitHubUser(13, "grace", ["grace@example.com"], orgs=orgs(250), teams=teams(201))
    assert_refused(await login(flow, storage, "acme"))
    assert "/user/orgs?page=3" in github.pages_served
    assert "/user/teams?page=3" in github.pages_served


async def test_pages_beyond_the_bound_are_not_read(
    flow: FlowClient, github: GitHubStandIn, storage: Storage
) -> None:
    github.max_per_page = 1
    github.user = GitHubUser(14, "heidi", ["heidi@example.com"], orgs=[*orgs(MAX_PAGES), "acme"])
    assert_refused(await login(flow, storage, "acme"))
    read = [page for page in github.pages_served if page.startswith("/user/orgs")]
    assert len(read) == MAX_PAGES


async def test_a_next_page_on_another_origin_is_not_followed(
    flow: FlowClient, github: GitHubStandIn, storage: Storage
) -> None:
    github.link_base = github.url.replace("127.0.0.1", "localhost")  # the same server, elsewhere
    github.user = GitHubUser(15, "ivan", ["ivan@example.com"], orgs=[*orgs(120), "acme"])
    assert_refused(await login(flow, storage, "acme"))
    assert [page for page in github.pages_served if page.startswith("/user/orgs")] == [
        "/user/orgs?page=1"
    ]
