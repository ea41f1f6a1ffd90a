"""A login's `state` is bound to the browser that started it: the GitHub callback carried to
another browser is refused there (login CSRF, RFC 6749 section 10.12), and still works in the
browser that started it."""

from __future__ import annotations

import httpx
import pytest

from oauthproxy.oauth.browser import browser_hash, login_cookie_name, same_browser
from oauthproxy.serve import Ready
from tests import oauth_helpers
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
