"""A login's `state` is bound to the browser that started it: the GitHub callback carried to
another browser is refused there (login CSRF, RFC 6749 section 10.12), and still works in the
browser that started it."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from oauthproxy.oauth.browser import browser_hash, login_cookie_name, same_browser
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.github_standin import GitHubStandIn
from tests.oauth_helpers import FlowClient, query_of

github = oauth_helpers.github
oauth_gateway = oauth_helpers.oauth_gateway
flow = oauth_helpers.flow


@pytest.mark.parametrize(
    ("stored", "presented", "same"),
    [
        (browser_hash("token-a"), "token-a", True),
        (browser_hash("token-a"), "token-b", False),
        (browser_hash("token-a"), None, False),
        (browser_hash("token-a"), "", False),
        ("", "", False),
        ("", "anything", False),
    ],
)
def test_same_browser(stored: str, presented: str | None, same: bool) -> None:
    assert same_browser(stored, presented) is same


def test_each_login_has_its_own_cookie_name() -> None:
    first, second = login_cookie_name("state-1"), login_cookie_name("state-2")
    assert first != second
    assert first.startswith("oauthproxy_login_") and "state" not in first


async def at_the_callback(flow: FlowClient, client_id: str) -> str:
    """The URL GitHub sends the browser back to, after a login the flow's browser started."""
    started = await flow.start(client_id, code_challenge="x" * 43)
    assert started.status_code == 302, started.text
    at_github = await flow.http.get(started.headers["location"])
    assert at_github.status_code == 302, at_github.text
    return str(at_github.headers["location"])


async def test_the_callback_in_another_browser_is_refused(
    flow: FlowClient, oauth_gateway: Ready
) -> None:
    client = await flow.register()
    callback = await at_the_callback(flow, client["client_id"])
    async with httpx.AsyncClient() as other_browser:
        refused = await other_browser.get(callback)
    assert refused.status_code == 403, refused.text
    assert "another browser" in refused.text
    assert "location" not in refused.headers
    finished = await flow.http.get(callback)  # the browser that started it still can
    assert finished.status_code == 302, finished.text
    assert finished.headers["location"].startswith("/consent")
    again = await flow.http.get(callback)
    assert again.status_code == 400  # and only once


async def test_another_logins_cookie_does_not_open_the_callback(
    flow: FlowClient, oauth_gateway: Ready
) -> None:
    """An attacker's own login cookie, planted under the name of the victim's login, is not the
    token that login was bound to."""
    client = await flow.register()
    victims = await at_the_callback(flow, client["client_id"])
    async with httpx.AsyncClient(base_url=oauth_gateway.api_url) as attacker_http:
        attackers = await at_the_callback(FlowClient(attacker_http), client["client_id"])
        planted = attacker_http.cookies.get(login_cookie_name(query_of(attackers)["state"]))
    assert planted
    async with httpx.AsyncClient() as victim_browser:
        victim_browser.cookies.set(login_cookie_name(query_of(victims)["state"]), planted)
        refused = await victim_browser.get(victims)
    assert refused.status_code == 403, refused.text


def _host_only(set_cookie: str, name: str) -> tuple[str, str]:
    """The name and value of a `__Host-` cookie as set: Secure, path `/`, no Domain."""
    assert set_cookie.startswith(f"__Host-{name}"), set_cookie
    assert "Secure" in set_cookie and "Path=/;" in set_cookie, set_cookie
    assert "domain" not in set_cookie.lower(), set_cookie
    sent_name, _, value = set_cookie.partition(";")[0].partition("=")
    return sent_name, value


async def test_over_https_a_sibling_host_cannot_plant_a_login_or_consent_cookie(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    """Cookie tossing: a proxied sibling (mallory.example.com) may set a cookie for
    example.com, which the browser also sends to auth.example.com. The callback and the consent
    decision read `oauthproxy_login_…` and `oauthproxy_consent` whoever set them, so mallory
    could bind a victim's browser to mallory's own login (login CSRF). Over HTTPS they are
    `__Host-` cookies, which only the authorization server's host sets; the old names count
    for nothing."""
    site = await oauth_helpers.start_gateway(
        nursery, make_settings, github, oauth_issuer="https://auth.example.com"
    )
    async with httpx.AsyncClient(base_url=site.api_url) as http:
        flow = FlowClient(http)
        client = await flow.register()
        started = await flow.start(client["client_id"], code_challenge="x" * 43)
        login_name, login_value = _host_only(started.headers["set-cookie"], "oauthproxy_login_")
        at_github = await http.get(started.headers["location"])
        back = urlsplit(at_github.headers["location"])
        assert (back.scheme, back.netloc) == ("https", "auth.example.com")
        callback = f"{back.path}?{back.query}"
        tossed = {"Cookie": f"{login_name.removeprefix('__Host-')}={login_value}"}
        refused = await http.get(callback, headers=tossed)
        assert refused.status_code == 403, refused.text
        landed = await http.get(callback, headers={"Cookie": f"{login_name}={login_value}"})
        assert landed.status_code == 302, landed.text
        consent = next(
            value for value in landed.headers.get_list("set-cookie") if "_consent=" in value
        )
        consent_name, consent_value = _host_only(consent, "oauthproxy_consent")
        page = await http.get(landed.headers["location"])
        assert page.status_code == 200, page.text
        form = dict(re.findall(r'name="(request|csrf_token)" value="([^"]+)"', page.text))
        form["decision"] = "approve"
        planted = {"Cookie": f"oauthproxy_consent={consent_value}"}
        assert (await http.post("/consent", data=form, headers=planted)).status_code == 400
        own = {"Cookie": f"{consent_name}={consent_value}"}
        approved = await http.post("/consent", data=form, headers=own)
        assert approved.status_code == 303, approved.text
