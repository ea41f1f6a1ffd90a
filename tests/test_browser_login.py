"""`redirect` mode: a browser without a token is sent to log in and comes back with a cookie."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import chromium, oauth_helpers
from tests.backend import serve_backend
from tests.chromium import chromium_binary
from tests.conftest import free_port
from tests.eventually import eventually
from tests.github_standin import GitHubStandIn, GitHubUser

github = oauth_helpers.github
APP = "app.example.com"
PAGE = {"Accept": "text/html"}


@pytest.fixture
async def site(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> Ready:
    backend: int = await nursery.start(functools.partial(serve_backend, "web"))
    port = free_port()
    gateway = await oauth_helpers.start_gateway(
        nursery, make_settings, github, http_port=port, oauth_issuer=f"http://localhost:{port}"
    )
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {
                "hostname": APP,
                "target_url": f"http://127.0.0.1:{backend}",
                "auth_enabled": True,
                "auth_mode": "redirect",
                "auth_required_users": ["alice"],
            }
        )
    )
    return gateway


class Browser:
    """Follows redirects by hand, keeping cookies per host; every gateway host is 127.0.0.1."""

    def __init__(self, client: httpx.AsyncClient, gateway_port: int) -> None:
        self._client = client
        self._port = gateway_port
        self.cookies: dict[str, dict[str, str]] = {}

    async def get(self, url: str) -> httpx.Response:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or 80
        target = f"http://127.0.0.1:{port}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        jar = self.cookies.setdefault(host, {})
        headers = {**PAGE, "Host": parts.netloc}
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        response = await self._client.get(target, headers=headers)
        for value in response.headers.get_list("set-cookie"):
            name, _, rest = value.partition("=")
            jar[name] = rest.split(";")[0]
        return response

    async def visit(self, url: str) -> tuple[httpx.Response, list[str]]:
        """Load `url`, following redirects; the final response and every URL visited."""
        visited = [url]
        response = await self.get(url)
        while response.status_code in (301, 302, 303, 307):
            url = httpx.URL(url).join(response.headers["location"]).__str__()
            visited.append(url)
            response = await self.get(url)
        return response, visited


@pytest.fixture
async def browser(site: Ready) -> Browser:
    client = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
    return Browser(client, site.http_port)


async def until_protected(site: Ready) -> None:
    async with httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{site.http_port}/echo"

        async def known() -> bool:
            return (await client.get(url, headers={"Host": APP})).status_code != 404

        await eventually(known, what=f"{APP} known")


async def test_a_browser_logs_in_and_gets_the_page(site: Ready, browser: Browser) -> None:
    await until_protected(site)
    page, visited = await browser.visit(f"http://{APP}:{site.http_port}/echo?x=1")
    assert page.status_code == 200
    assert page.json()["headers"]["x-auth-user-name"] == "alice"
    assert page.json()["query"] == "x=1"
    hosts = [urlsplit(url).hostname for url in visited]
    assert hosts[0] == APP and "localhost" in hosts and hosts[-1] == APP
    assert any(urlsplit(url).path == "/.oauthproxy/callback" for url in visited)
    # the cookie now opens the page directly
    again, visited_again = await browser.visit(f"http://{APP}:{site.http_port}/echo")
    assert again.status_code == 200
    assert len(visited_again) == 1


async def test_api_clients_still_get_a_401(site: Ready) -> None:
    await until_protected(site)
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"http://127.0.0.1:{site.http_port}/echo", headers={"Host": APP}
        )
    assert response.status_code == 401


async def test_a_user_outside_the_allowlist_gets_no_cookie(
    site: Ready, browser: Browser, github: GitHubStandIn
) -> None:
    await until_protected(site)
    github.user = GitHubUser(1002, "mallory", ["mallory@example.com"])
    page, _ = await browser.visit(f"http://{APP}:{site.http_port}/echo")
    assert page.status_code == 403
    assert "unified_auth_token" not in browser.cookies.get(APP, {})


async def test_a_forged_or_reused_callback_is_refused(site: Ready, browser: Browser) -> None:
    await until_protected(site)
    response = await browser.get(
        f"http://{APP}:{site.http_port}/.oauthproxy/callback?code=forged&state=unknown"
    )
    assert response.status_code == 400


async def test_redirect_mode_in_a_real_headless_chromium(site: Ready, tmp_path: Path) -> None:
    """Chromium loads the protected page: to the authorization server, through the GitHub
    stand-in's login, back to the proxy's callback (cookie set), and on to the page."""
    await until_protected(site)
    page = await trio.run_process(
        [
            chromium_binary(),
            *chromium.ARGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--host-resolver-rules=MAP * 127.0.0.1",
            "--virtual-time-budget=10000",
            "--dump-dom",
            f"http://{APP}:{site.http_port}/echo?from=chromium",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    dom = page.stdout.decode()
    assert '"x-auth-user-name": "alice"' in dom, dom[-2000:]
    assert '"query": "from=chromium"' in dom
    assert "unified_auth_token" not in dom  # the backend never sees the token itself
