"""Anonymous requests that make the gateway store something are limited per client IP
(OAUTH_ANONYMOUS_RATE_LIMIT in OAUTH_ANONYMOUS_RATE_WINDOW seconds), like `POST /register`: the
login start on a redirect-mode proxy, `GET /authorize`, and requests naming a client metadata
document the gateway would fetch and cache."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.oauth.rate_limits import over_limit
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from oauthproxy.storage.windows import WindowCount
from tests import oauth_helpers
from tests.backend import serve_backend
from tests.eventually import eventually
from tests.github_standin import GitHubStandIn
from tests.oauth_helpers import REDIRECT_URI, pkce_pair, start_gateway

github = oauth_helpers.github
APP = "app.example.com"

Start = Callable[..., Awaitable[Ready]]


@pytest.mark.parametrize(
    ("count", "remaining_ms", "limit", "retry_after"),
    [
        (1, 60_000, 2, None),
        (2, 60_000, 2, None),
        (3, 60_000, 2, 60),
        (3, 1, 2, 1),
        (3, 0, 2, 1),
        (3, 1_500, 2, 2),
        (100, 60_000, 0, None),
    ],
)
def test_over_limit(count: int, remaining_ms: int, limit: int, retry_after: int | None) -> None:
    limited = over_limit(WindowCount(count=count, remaining_ms=remaining_ms), limit, 60, "things")
    assert (limited and limited.retry_after) == retry_after
    if limited:
        assert limited.description.startswith(f"at most {limit} things per 60 s")


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
    async with httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        yield client


def assert_limited(response: httpx.Response, window: int) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= window
    assert response.json()["error"] == "too_many_requests"
    assert f"per {window} s" in response.text


async def test_authorize_over_the_limit_gets_429_and_stores_nothing(
    start: Start, http: httpx.AsyncClient, storage: Storage
) -> None:
    gateway = await start(oauth_anonymous_rate_limit=2, oauth_anonymous_rate_window=600)
    registered = await http.post(
        f"{gateway.api_url}/register", json={"client_name": "C", "redirect_uris": [REDIRECT_URI]}
    )
    query = {
        "client_id": registered.json()["client_id"],
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "code_challenge": pkce_pair()[1],
        "code_challenge_method": "S256",
    }
    for _ in range(2):
        started = await http.get(f"{gateway.api_url}/authorize", params=query)
        assert started.status_code == 302, started.text
    assert_limited(await http.get(f"{gateway.api_url}/authorize", params=query), 600)
    assert len(await storage.redis.keys("oauth:state:*")) == 2


async def test_naming_uncached_metadata_documents_is_limited(
    start: Start, http: httpx.AsyncClient
) -> None:
    """Each new document URL would be fetched and cached: counted, so one client cannot make
    the gateway fetch and store without end."""
    gateway = await start(oauth_anonymous_rate_limit=2, oauth_anonymous_rate_window=600)
    for number in range(2):
        form = {"grant_type": "refresh_token", "refresh_token": "x",
                "client_id": f"https://127.0.0.1:1/client-{number}.json"}  # fmt: skip
        refused = await http.post(f"{gateway.api_url}/token", data=form)
        assert refused.status_code == 401, refused.text
    form["client_id"] = "https://127.0.0.1:1/client-2.json"
    assert_limited(await http.post(f"{gateway.api_url}/token", data=form), 600)
    assert_limited(await http.post(f"{gateway.api_url}/revoke", data={**form, "token": "x"}), 600)
    # a registered client is no document: not counted
    registered = await http.post(
        f"{gateway.api_url}/register", json={"client_name": "C", "redirect_uris": [REDIRECT_URI]}
    )
    form["client_id"] = registered.json()["client_id"]
    form["client_secret"] = registered.json()["client_secret"]
    assert (await http.post(f"{gateway.api_url}/token", data=form)).status_code == 400


async def test_the_limit_can_be_turned_off(start: Start, http: httpx.AsyncClient) -> None:
    gateway = await start(oauth_anonymous_rate_limit=0)
    form = {"grant_type": "refresh_token", "refresh_token": "x"}
    for number in range(5):
        form["client_id"] = f"https://127.0.0.1:1/client-{number}.json"
        assert (await http.post(f"{gateway.api_url}/token", data=form)).status_code == 401


async def test_login_starts_on_a_redirect_mode_proxy_are_limited(
    start: Start, http: httpx.AsyncClient, storage: Storage, nursery: trio.Nursery
) -> None:
    backend: int = await nursery.start(functools.partial(serve_backend, "web"))
    gateway = await start(oauth_anonymous_rate_limit=2, oauth_anonymous_rate_window=600)
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {"hostname": APP, "target_url": f"http://127.0.0.1:{backend}", "auth_enabled": True,
             "auth_mode": "redirect", "auth_required_users": ["alice"]}
        )
    )  # fmt: skip
    url = f"http://127.0.0.1:{gateway.http_port}/page"
    headers = {"Host": APP, "Accept": "text/html, application/json"}

    async def known() -> bool:
        return (await http.get(url, headers={"Host": APP})).status_code != 404

    await eventually(known, what=f"{APP} known")
    for _ in range(2):
        started = await http.get(url, headers=headers)
        assert started.status_code == 302, started.text
    assert_limited(await http.get(url, headers=headers), 600)
    assert len(await storage.redis.keys("oauth:proxy_login:*")) == 2
    # a client its X-Forwarded-For says is another is still this one (the peer is not trusted)
    assert_limited(await http.get(url, headers={**headers, "X-Forwarded-For": "6.6.6.6"}), 600)
