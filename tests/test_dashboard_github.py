"""Signing in to the dashboard with GitHub, on the wire and in a real Chromium, against a real
gateway whose GitHub is the stand-in (tests/github_standin.py).

A token lists the GitHub logins that may sign in as it (`github_users`, set by the admin only, a
login on one token at most); ADMIN_GITHUB_USERS sign in as the admin. The callback's state is
bound to the browser that started the sign-in and is taken once. What the browser gets is a
dashboard session that acts as the token (owner scoping as with the token itself), never the
token's secret.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio
from playwright.sync_api import Page, expect

from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.chromium import Traffic, in_chromium
from tests.eventually import eventually
from tests.github_standin import GitHubStandIn, GitHubUser
from tests.test_dashboard import open_page

github = oauth_helpers.github
TOKENS = "/api/v1/tokens/"
TARGETS = "/api/v1/proxy/targets/"
ROOT = "root-user"
"""In ADMIN_GITHUB_USERS: signs in as the admin."""


@pytest.fixture
async def site(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> Ready:
    return await oauth_helpers.start_gateway(
        nursery, make_settings, github, admin_github_users=f"someone-else, {ROOT.upper()}"
    )


@pytest.fixture
async def admin(site: Ready) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {site.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=site.api_url, headers=headers) as client:
        yield client


def as_user(github: GitHubStandIn, login: str) -> None:
    github.user = GitHubUser(2000 + len(login), login, [f"{login}@example.com"])


async def make_owner(admin: httpx.AsyncClient, name: str, *logins: str) -> str:
    created = await admin.post(f"{TOKENS}generate", json={"name": name, "github_users": logins})
    assert created.status_code == 201, created.text
    secret: str = created.json()["token"]
    return secret


async def add_proxy(site: Ready, secret: str, hostname: str) -> None:
    body = {"hostname": hostname, "target_url": "http://127.0.0.1:9", "enable_https": False}
    async with httpx.AsyncClient(base_url=site.api_url) as client:
        created = await client.post(
            TARGETS, json=body, headers={"Authorization": f"Bearer {secret}"}
        )
    assert created.status_code == 201, created.text


class Browser:
    """One browser's cookie jar on the admin app; GitHub (the stand-in) is visited by hand."""

    def __init__(self, site: Ready) -> None:
        self.http = httpx.AsyncClient(base_url=site.api_url)

    async def start(self) -> str:
        """Start signing in; the URL GitHub sends the browser back to (code and state)."""
        started = await self.http.get("/dashboard/github/login")
        assert started.status_code == 302, started.text
        cookie = started.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie, cookie
        assert "Path=/dashboard/github/" in cookie, cookie
        async with httpx.AsyncClient() as to_github:
            approved = await to_github.get(started.headers["location"])
        assert approved.status_code == 302, approved.text
        back: str = approved.headers["location"]
        assert urlsplit(back).path == "/dashboard/github/callback"
        return back

    async def finish(self, callback: str) -> httpx.Response:
        return await self.http.get(callback)

    async def session(self) -> httpx.Response:
        return await self.http.post("/dashboard/session")

    async def sign_in(self) -> str:
        landed = await self.finish(await self.start())
        assert (landed.status_code, landed.headers["location"]) == (
            302,
            "/dashboard/?signed-in=github",
        ), landed.text
        handoff = next(
            value
            for value in landed.headers.get_list("set-cookie")
            if value.startswith("oauthproxy_dashboard_session=")
        )
        assert "HttpOnly" in handoff and "SameSite=Lax" in handoff, handoff
        assert "Path=/dashboard/session" in handoff, handoff
        taken = await self.session()
        assert taken.status_code == 200, taken.text
        assert taken.headers["cache-control"] == "no-store"
        secret: str = taken.json()["token"]
        assert secret.startswith("dsh_")
        return secret


@pytest.fixture
async def browser(site: Ready) -> AsyncIterator[Browser]:
    opened = Browser(site)
    async with opened.http:
        yield opened


def bearer(site: Ready, secret: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {secret}"}
    return httpx.AsyncClient(base_url=site.api_url, headers=headers)


async def test_an_owner_signed_in_with_github_sees_only_its_own_records(
    site: Ready,
    admin: httpx.AsyncClient,
    browser: Browser,
    github: GitHubStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    alice_token = await make_owner(admin, "team-a", "Alice")
    bob_token = await make_owner(admin, "team-b", "bob")
    await add_proxy(site, alice_token, "alice.example.com")
    await add_proxy(site, bob_token, "bob.example.com")
    as_user(github, "alice")  # GitHub's spelling; the token lists "Alice"

    secret = await browser.sign_in()
    assert (await browser.session()).status_code == 401  # the hand-off is taken once
    async with bearer(site, secret) as alice:
        info = (await alice.get(f"{TOKENS}info")).json()
        assert (info["name"], info["is_admin"]) == ("team-a", False)
        listed = (await alice.get(TARGETS)).json()
        assert [proxy["hostname"] for proxy in listed] == ["alice.example.com"]
        assert (await alice.get(f"{TARGETS}bob.example.com")).status_code == 404
        assert (await alice.get(f"{TOKENS}team-b")).status_code == 404
        assert (await alice.get("/api/v1/oauth/clients")).status_code == 403
        revealed = await alice.get(f"{TOKENS}team-a/reveal")
        assert revealed.status_code == 403, revealed.text
        assert revealed.json()["field"] == "Authorization"
        assert alice_token not in revealed.text

        assert (await alice.delete("/dashboard/session")).status_code == 204
        assert (await alice.get(f"{TOKENS}info")).status_code == 401
    logged = caplog.text
    assert "GitHub user alice signed in as the token team-a" in logged
    for secret_value in (secret, alice_token, "gho_"):
        assert secret_value not in logged


async def test_a_session_ends_when_its_token_is_deleted(
    site: Ready, admin: httpx.AsyncClient, browser: Browser, github: GitHubStandIn
) -> None:
    await make_owner(admin, "team-a", "alice")
    as_user(github, "alice")
    secret = await browser.sign_in()
    async with bearer(site, secret) as alice:
        assert (await alice.get(f"{TOKENS}info")).status_code == 200
        assert (await admin.delete(f"{TOKENS}team-a")).status_code == 200
        await make_owner(admin, "team-a", "alice")  # the same name and login, a new secret
        assert (await alice.get(f"{TOKENS}info")).status_code == 401


async def test_a_session_ends_when_its_login_leaves_the_tokens_github_users(
    site: Ready, admin: httpx.AsyncClient, browser: Browser, github: GitHubStandIn
) -> None:
    """The admin takes a GitHub user off a token's list: a session that user made before
    acted as the token for the rest of its 8 hours. It ends at once now."""
    await make_owner(admin, "team-a", "alice", "bob")
    as_user(github, "alice")
    secret = await browser.sign_in()
    async with bearer(site, secret) as alice:
        assert (await alice.get(f"{TOKENS}info")).status_code == 200
        changed = await admin.put(f"{TOKENS}team-a/github-users", json={"github_users": ["bob"]})
        assert changed.status_code == 200, changed.text
        assert (await alice.get(f"{TOKENS}info")).status_code == 401
        assert (await alice.get(TARGETS)).status_code == 401


async def test_over_https_no_other_host_can_plant_a_login_or_a_session(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    """Cookie tossing: a proxied sibling host (mallory.example.com) may set a cookie for
    example.com, and the dashboard at admin.example.com read `oauthproxy_dashboard_session`
    (or the login cookie) whoever set it: mallory's own session, planted so, was taken by the
    victim's dashboard tab (`/dashboard/?signed-in=github`), which then worked as mallory's
    token. Over HTTPS the cookies are `__Host-` ones, which only the dashboard's host sets."""
    site = await oauth_helpers.start_gateway(
        nursery, make_settings, github, dashboard_url="https://admin.example.com"
    )
    headers = {"Authorization": f"Bearer {site.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=site.api_url, headers=headers) as admin:
        await make_owner(admin, "team-m", "mallory")
    as_user(github, "mallory")
    async with httpx.AsyncClient(base_url=site.api_url) as http:
        started = await http.get("/dashboard/github/login")
        login = started.headers["set-cookie"]
        assert login.startswith("__Host-oauthproxy_dashboard_login="), login
        assert "Secure" in login and "Path=/;" in login and "Domain" not in login, login
        async with httpx.AsyncClient() as to_github:
            approved = await to_github.get(started.headers["location"])
        back = urlsplit(approved.headers["location"])
        assert (back.scheme, back.netloc) == ("https", "admin.example.com")
        browser = login.partition(";")[0]
        landed = await http.get(f"{back.path}?{back.query}", headers={"Cookie": browser})
        assert landed.status_code == 302, landed.text
        session = next(
            value for value in landed.headers.get_list("set-cookie") if "_session=" in value
        )
        assert session.startswith("__Host-oauthproxy_dashboard_session=dsh_"), session
        assert "Secure" in session and "Path=/;" in session, session
        secret = session.partition("=")[2].partition(";")[0]
        tossed = {"Cookie": f"oauthproxy_dashboard_session={secret}"}  # as example.com sets it
        assert (await http.post("/dashboard/session", headers=tossed)).status_code == 401
        own = {"Cookie": f"__Host-oauthproxy_dashboard_session={secret}"}
        taken = await http.post("/dashboard/session", headers=own)
        assert taken.status_code == 200 and taken.json()["token"] == secret


async def test_an_admin_github_user_signs_in_as_the_admin(
    site: Ready, browser: Browser, github: GitHubStandIn
) -> None:
    as_user(github, ROOT)
    async with bearer(site, await browser.sign_in()) as root:
        info = (await root.get(f"{TOKENS}info")).json()
        assert (info["name"], info["is_admin"]) == ("admin", True)
        assert (await root.get("/api/v1/oauth/clients")).status_code == 200


async def test_forged_replayed_and_foreign_states_sign_nobody_in(
    site: Ready, admin: httpx.AsyncClient, browser: Browser, github: GitHubStandIn
) -> None:
    await make_owner(admin, "team-a", "alice")
    as_user(github, "alice")

    callback = await browser.start()
    forged = callback.replace("state=", "state=forged")
    refused = await browser.finish(forged)
    assert refused.status_code == 400
    assert "Sign-in expired" in refused.text
    assert "oauthproxy_dashboard_session=" not in refused.headers.get("set-cookie", "")

    async with httpx.AsyncClient(base_url=site.api_url) as elsewhere:
        foreign = await elsewhere.get(
            callback
        )  # the right state, in a browser that did not start it
    assert foreign.status_code == 403
    assert "started in another browser" in foreign.text
    assert "oauthproxy_dashboard_session=" not in foreign.headers.get("set-cookie", "")

    assert (await browser.finish(callback)).status_code == 302  # still the rightful browser's
    assert (await browser.session()).status_code == 200
    replayed = await browser.finish(callback)
    assert replayed.status_code == 400
    assert "oauthproxy_dashboard_session=" not in replayed.headers.get("set-cookie", "")

    state = parse_qs(urlsplit(callback).query)["state"][0]
    no_state = await browser.finish(callback.replace(f"state={state}", ""))
    assert no_state.status_code == 400


async def test_an_unlisted_github_user_gets_no_session(
    site: Ready, admin: httpx.AsyncClient, browser: Browser, github: GitHubStandIn
) -> None:
    await make_owner(admin, "team-a", "alice")
    as_user(github, "mallory")
    page = await browser.finish(await browser.start())
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert "GitHub user mallory is not allowed to sign in" in page.text
    assert "ask the" in page.text and "admin" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "oauthproxy_dashboard_session=" not in page.headers.get("set-cookie", "")
    assert (await browser.session()).status_code == 401


async def test_only_the_admin_lists_github_users_and_a_login_is_on_one_token(
    site: Ready, admin: httpx.AsyncClient
) -> None:
    a_token = await make_owner(admin, "team-a", "alice")
    await make_owner(admin, "team-b")

    taken = await admin.post(f"{TOKENS}generate", json={"name": "c", "github_users": ["ALICE"]})
    assert (taken.status_code, taken.json()["field"]) == (409, "github_users"), taken.text
    assert "team-a" in taken.json()["detail"]
    assert (await admin.get(f"{TOKENS}c")).status_code == 404  # nothing half-written
    moved = await admin.put(f"{TOKENS}team-b/github-users", json={"github_users": ["Alice"]})
    assert (moved.status_code, moved.json()["field"]) == (409, "github_users"), moved.text

    async with bearer(site, a_token) as owner:
        for name in ("team-a", "team-b"):
            own = await owner.put(f"{TOKENS}{name}/github-users", json={"github_users": [ROOT]})
            assert own.status_code == 403, own.text
    assert (await admin.get(f"{TOKENS}team-a")).json()["github_users"] == ["alice"]

    as_admin = await admin.put(f"{TOKENS}team-b/github-users", json={"github_users": [ROOT]})
    assert (as_admin.status_code, as_admin.json()["field"]) == (409, "github_users")
    assert "ADMIN_GITHUB_USERS" in as_admin.json()["detail"]
    on_admin = await admin.put(f"{TOKENS}admin/github-users", json={"github_users": [ROOT]})
    assert on_admin.status_code == 200, on_admin.text

    for bad in (["not a login"], ["-dash"], ["a" * 40], ["x", "x"], [f"u{n}" for n in range(21)]):
        refused = await admin.put(f"{TOKENS}team-b/github-users", json={"github_users": bad})
        assert refused.status_code == 422, bad
        assert refused.json()["field"].startswith("github_users"), refused.text
    missing = await admin.put(f"{TOKENS}nobody/github-users", json={"github_users": []})
    assert missing.status_code == 404

    assert (await admin.delete(f"{TOKENS}team-a")).status_code == 200
    freed = await admin.put(f"{TOKENS}team-b/github-users", json={"github_users": ["alice"]})
    assert freed.status_code == 200, freed.text
    one = await admin.put(f"{TOKENS}team-b/github-users", json={"github_users": ["Eve", "eve"]})
    assert one.json()["github_users"] == ["Eve"]  # logins ignore case: one login
    cleared = await admin.put(f"{TOKENS}team-b/github-users", json={"github_users": []})
    assert cleared.json()["github_users"] == []
    again = await admin.post(f"{TOKENS}generate", json={"name": "d", "github_users": ["alice"]})
    assert again.status_code == 201, again.text


async def test_without_a_github_application_the_page_offers_tokens_only(
    gateway: Ready, anonymous: httpx.AsyncClient
) -> None:
    assert (await anonymous.get("/dashboard/session/options")).json() == {"github": False}
    off = await anonymous.get("/dashboard/github/login")
    assert off.status_code == 404
    assert "GITHUB_CLIENT_ID" in off.text


async def test_sign_in_with_github_in_chromium(
    site: Ready, admin: httpx.AsyncClient, github: GitHubStandIn, tmp_path: Path
) -> None:
    alice_token = await make_owner(admin, "team-a", "alice")
    bob_token = await make_owner(admin, "team-b", "bob")
    await add_proxy(site, alice_token, "alice.example.com")
    await add_proxy(site, bob_token, "bob.example.com")
    as_user(github, "alice")

    def steps(page: Page, traffic: Traffic) -> str:
        page.goto(f"{site.api_url}/dashboard/")
        page.get_by_role("link", name="Sign in with GitHub").click()
        expect(page.locator("#who")).to_have_text("Signed in as team-a (owner)")
        expect(page.locator("tr[data-key='alice.example.com']")).to_be_visible()
        expect(page.locator("tr[data-key='bob.example.com']")).to_have_count(0)
        assert urlsplit(page.url).query == ""
        secret: str = page.evaluate("Object.values({...sessionStorage}).join(' ')")
        assert secret.startswith("dsh_") and alice_token not in secret
        open_page(page, "routes")
        page.click("#sign-out")
        expect(page.locator("#sign-in")).to_be_visible()
        assert page.evaluate("sessionStorage.length") == 0
        return secret

    secret, traffic = await in_chromium(tmp_path, site.api_url, steps)
    assert traffic.errors == []
    assert {urlsplit(url).netloc for url in traffic.foreign()} <= {urlsplit(github.url).netloc}
    async with bearer(site, secret) as ended:

        async def signed_out() -> bool:
            return (await ended.get(f"{TOKENS}info")).status_code == 401

        await eventually(signed_out, what="the session ended on the server")


async def test_sign_in_starts_are_rate_limited_per_client(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    """Each start stores a state for minutes: counted as the OAuth server's login starts are."""
    limited = await oauth_helpers.start_gateway(
        nursery, make_settings, github, oauth_anonymous_rate_limit=2
    )
    async with httpx.AsyncClient(base_url=limited.api_url) as client:
        for _ in range(2):
            assert (await client.get("/dashboard/github/login")).status_code == 302
        refused = await client.get("/dashboard/github/login")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert "Too many sign-ins" in refused.text
    assert "set-cookie" not in refused.headers


@pytest.mark.parametrize("end", ["sign_out", "login_removed"])
async def test_a_sessions_waiting_log_follow_ends_with_the_session(
    site: Ready, admin: httpx.AsyncClient, browser: Browser, github: GitHubStandIn, end: str
) -> None:
    """A long poll of /api/v1/logs/follow (25 s) made with a dashboard session was checked only
    when it opened: one the user signed out of, or whose login the admin took off the token,
    still got the entries that came while it waited. It is authenticated again every few
    seconds of the wait, and answers the 401."""

    await make_owner(admin, "team-a", "alice", "bob")
    as_user(github, "alice")
    secret = await browser.sign_in()
    async with bearer(site, secret) as alice:
        start = (await alice.get("/api/v1/logs/follow", params={"limit": 1})).json()["last"]
        answers: list[httpx.Response] = []

        async def follow() -> None:
            params: dict[str, str | int] = {"after": start, "wait": 25}
            answers.append(await alice.get("/api/v1/logs/follow", params=params, timeout=30))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.sleep(0.5)  # the follow is waiting
            if end == "sign_out":
                async with bearer(site, secret) as same:
                    assert (await same.delete("/dashboard/session")).status_code == 204
            else:
                users = {"github_users": ["bob"]}
                changed = await admin.put(f"{TOKENS}team-a/github-users", json=users)
                assert changed.status_code == 200, changed.text
    assert answers[0].status_code == 401, answers[0].text
