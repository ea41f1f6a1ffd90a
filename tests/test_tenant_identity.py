"""A browser login to an owner's redirect-mode proxy needs no consent (the gateway's own client
logs in), so any visitor who once allowed the gateway's GitHub app is logged in by redirects
alone. An owner's backend (another tenant's) therefore learns of a visitor only what its policy
checks: the login and id always, the groups its `auth_required_groups` names, the email when it
checks emails. The admin's proxies pass every identity header."""

from __future__ import annotations

import base64
import functools
import json
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


def _claims_in(cookie: str) -> str:
    """The payload of the JWT among the cookies a backend was sent ("" when there is none)."""
    for pair in cookie.split(";"):
        value = pair.strip().partition("=")[2]
        if value.count(".") == 2:
            payload = value.split(".")[1]
            return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    return ""


async def test_the_login_cookie_tells_an_owners_backend_no_more_once_auth_is_off(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], github: GitHubStandIn
) -> None:
    """The backend's identity headers were narrowed, but the cookie the login left is a token
    whose claims held the visitor's email and every organisation and team. With auth on, the
    data plane strips it; once the owner turns auth off (or renames the cookie), the browser
    keeps sending it and the backend reads it whole. Tokens of the gateway's own login client
    for an owner's proxy now carry only what that proxy's policy checks."""
    backend: int = await nursery.start(functools.partial(serve_backend, "echo"))
    port = free_port()
    ready = await start_gateway(
        nursery, make_settings, github, http_port=port, oauth_issuer=f"http://localhost:{port}"
    )
    github.user = VICTOR
    host = "open.example.com"
    admin = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with (
        httpx.AsyncClient(base_url=ready.api_url, headers=admin) as api,
        owner(api, ready, "mallory") as mallory,
        httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as c,
    ):
        await proxy(mallory, host, f"http://127.0.0.1:{backend}")
        auth = {
            "auth_mode": "redirect",
            "auth_required_users": ["*"],
            "auth_required_groups": ["hobby"],
        }
        await created(await mallory.post(f"{TARGETS}{host}/auth", json=auth))
        browser = Browser(c, port)

        async def protected() -> bool:
            return (await browser.get(f"http://{host}:{port}/")).status_code == 302

        await eventually(protected, what="redirect mode")
        page, _ = await browser.visit(f"http://{host}:{port}/echo/whoami")
        assert page.status_code == 200, page.text
        assert (await mallory.delete(f"{TARGETS}{host}/auth")).status_code in (200, 204)

        async def unprotected() -> httpx.Response | None:
            answer = await browser.get(f"http://{host}:{port}/echo/again")
            headers = answer.json()["headers"] if answer.status_code == 200 else {}
            return (
                answer if answer.status_code == 200 and "x-auth-user-name" not in headers else None
            )

        again = await eventually(unprotected, what="auth off")
    claims = json.loads(_claims_in(again.json()["headers"].get("cookie", "")) or "{}")
    assert claims.get("username") == "victor"  # the cookie is still sent: it is the token
    assert claims.get("groups") == ["hobby"]  # the one group the policy checked
    assert not claims.get("email")
