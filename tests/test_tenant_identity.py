"""A browser login to an owner's redirect-mode proxy needs no consent (the gateway's own client
logs in), so any visitor who once allowed the gateway's GitHub app is logged in by redirects
alone. An owner's backend (another tenant's) therefore learns of a visitor only what its policy
checks: the login and id always, the groups its `auth_required_groups` names, the email when it
checks emails. The admin's proxies pass every identity header."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import httpx
import trio

from oauthproxy.settings import Settings
from tests import oauth_helpers
from tests.backend import serve_backend
from tests.conftest import free_port
from tests.eventually import eventually
from tests.github_standin import GitHubStandIn, GitHubUser
from tests.oauth_helpers import start_gateway
from tests.tenants import TARGETS, created, owner, proxy
from tests.test_browser_login import Browser

github = oauth_helpers.github

VICTOR = GitHubUser(
    2002,
    "victor",
    ["victor@corp.example"],
    orgs=["corp-private", "hobby"],
    teams=[("corp-private", "incident-response")],
)


async def _seen(port: int, host: str) -> dict[str, str]:
    """The identity headers the backend of `host` got for a visit by a browser of VICTOR."""
    async with httpx.AsyncClient(
        timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        browser = Browser(client, port)

        async def protected() -> bool:
            return (await browser.get(f"http://{host}:{port}/")).status_code == 302

        await eventually(protected, what=f"{host} in redirect mode")
        page, _ = await browser.visit(f"http://{host}:{port}/echo/whoami")
    assert page.status_code == 200, page.text
    headers: dict[str, str] = page.json()["headers"]
    return {name: value for name, value in headers.items() if name.startswith("x-auth-")}


async def test_an_owners_backend_learns_only_what_its_policy_checks(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], github: GitHubStandIn
) -> None:
    backend: int = await nursery.start(functools.partial(serve_backend, "echo"))
    port = free_port()
    ready = await start_gateway(
        nursery, make_settings, github, http_port=port, oauth_issuer=f"http://localhost:{port}"
    )
    github.user = VICTOR
    admin = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    policies: dict[str, dict[str, Any]] = {
        "open.example.com": {"auth_required_users": ["*"]},
        "team.example.com": {
            "auth_required_users": ["*"],
            "auth_required_groups": ["corp-private"],
            "auth_required_emails": ["*@corp.example"],
        },
    }
    async with (
        httpx.AsyncClient(base_url=ready.api_url, headers=admin) as api,
        owner(api, ready, "mallory") as mallory,
    ):
        for host, policy in policies.items():
            await proxy(mallory, host, f"http://127.0.0.1:{backend}")
            auth = {"auth_mode": "redirect", **policy}
            await created(await mallory.post(f"{TARGETS}{host}/auth", json=auth))
        await proxy(api, "admins.example.com", f"http://127.0.0.1:{backend}")
        auth = {"auth_mode": "redirect", "auth_required_users": ["*"]}
        await created(await api.post(f"{TARGETS}admins.example.com/auth", json=auth))

    opened = await _seen(port, "open.example.com")
    assert opened["x-auth-user-name"] == "victor"
    assert opened.get("x-auth-email", "") == "" and opened.get("x-auth-groups", "") == ""
    team = await _seen(port, "team.example.com")
    assert team["x-auth-email"] == "victor@corp.example"  # (checked: the policy names emails)
    assert team["x-auth-groups"] == "corp-private"  # (not hobby, not the team)
    admins = await _seen(port, "admins.example.com")
    assert admins["x-auth-email"] == "victor@corp.example"
    assert set(admins["x-auth-groups"].split(",")) == {
        "corp-private",
        "hobby",
        "corp-private/incident-response",
    }
