"""Token confusion on the OAuth 2.1 server, each attack sent for real (found by an attack hunt):
the gateway's own login client's tokens for an owner's proxy carry only what its policy checks,
whatever the request leaves out or the owner deletes; an owner's proxy on the host of a resource
the admin registered does not open that resource to every user; a trusted client's registration
token cannot retarget it and keep it free of consent."""

from __future__ import annotations

import base64
import functools
import json
import secrets
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import trio

from oauthproxy.oauth.pkce import s256
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


def _payload(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return claims


async def _until_callback(browser: Browser, url: str) -> str:
    """Follow redirects as a browser does, stopping at the first /.oauthproxy/callback (the
    attacker's server, when the owner's DNS points the proxy's hostname there)."""
    response = await browser.get(url)
    while response.status_code in (301, 302, 303, 307):
        url = str(httpx.URL(url).join(response.headers["location"]))
        if urlsplit(url).path == "/.oauthproxy/callback":
            return url
        response = await browser.get(url)
    raise AssertionError(f"no callback reached: {response.status_code} {response.text[:300]}")


@pytest.mark.parametrize("variant", ["no-proxy-hostname", "proxy-deleted-before-redeem"])
async def test_gateway_login_token_for_an_owners_proxy_keeps_the_whole_identity(
    nursery: trio.Nursery,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
    variant: str,
) -> None:
    """Mallory owns a redirect-mode proxy that checks nothing of a visitor but the login. She
    sends a victim a link to /authorize for the gateway's own client (no consent page) naming
    her callback and her origin as the resource, but leaving out `proxy_hostname`. The code
    reaches her server (her DNS); she redeems it with her PKCE verifier. The token should carry
    only what her proxy's policy checks (11c2f7b); without proxy_hostname it carried the victim's
    email and every organisation and team, and so it did when she deleted her proxy before
    redeeming the code. The gateway's client now needs `proxy_hostname`, and a proxy gone by
    the redemption gets the least (no email, no group)."""
    backend: int = await nursery.start(functools.partial(serve_backend, "echo"))
    port = free_port()
    issuer = f"http://localhost:{port}"
    ready = await start_gateway(nursery, make_settings, github, http_port=port, oauth_issuer=issuer)
    github.user = VICTOR
    host = "open.example.com"
    admin = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with (
        httpx.AsyncClient(base_url=ready.api_url, headers=admin) as api,
        owner(api, ready, "mallory") as mallory,
        httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as c,
    ):
        await proxy(mallory, host, f"http://127.0.0.1:{backend}")
        auth = {"auth_mode": "redirect", "auth_required_users": ["*"]}
        await created(await mallory.post(f"{TARGETS}{host}/auth", json=auth))
        browser = Browser(c, port)

        async def protected() -> bool:
            return (await browser.get(f"http://{host}:{port}/")).status_code == 302

        await eventually(protected, what="redirect mode")
        origin = f"http://{host}:{port}"
        verifier = secrets.token_urlsafe(48)
        query = {
            "response_type": "code",
            "client_id": "oauthproxy-gateway",
            "redirect_uri": origin + "/.oauthproxy/callback",
            "state": "x",
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            "scope": "mcp:read mcp:write",
            "resource": origin,
        }
        if variant == "no-proxy-hostname":  # whose login it is, left out: refused (a page)
            refused = await browser.get(f"{issuer}/authorize?{urlencode(query)}")
            assert refused.status_code == 400, refused.text
            assert "logs in to the proxy" in refused.text
            return
        query["proxy_hostname"] = host  # the regular login start's request
        callback = await _until_callback(browser, f"{issuer}/authorize?{urlencode(query)}")
        code = parse_qs(urlsplit(callback).query)["code"][0]
        if variant == "proxy-deleted-before-redeem":
            # her server holds the code; she deletes her proxy, then redeems it
            gone = await mallory.delete(f"{TARGETS}{host}")
            assert gone.status_code in (200, 204), gone.text
        answer = await c.post(
            f"http://127.0.0.1:{port}/token",
            headers={"Host": f"localhost:{port}"},
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": origin + "/.oauthproxy/callback",
                "client_id": "oauthproxy-gateway",
                "code_verifier": verifier,
                "resource": origin,
            },
        )
        assert answer.status_code == 200, answer.text
        claims = _payload(answer.json()["access_token"])
    assert claims["username"] == "victor"
    assert not claims.get("email"), claims  # her policy checks no email
    assert claims.get("groups") == [], claims  # nor any group


async def test_an_owner_claiming_a_registered_resources_host_opens_it_to_every_user(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], github: GitHubStandIn
) -> None:
    """The admin registered https://tools.example.net (served elsewhere, no proxy): logins for
    it are under OAUTH_ALLOWED_GITHUB_USERS (alice). Mallory, an owner token, creates a proxy
    named tools.example.net that lets every GitHub user in. The resource's host is now "a
    proxy", so only her proxy's allowlist is checked, and any GitHub user (mallory) gets a token
    whose audience is the admin's registered resource. Owners may not proxy such a host now,
    and a registered resource on a host a tenant proxied first is under the global allowlist
    too."""
    registered = "https://tools.example.net/mcp"
    ready = await start_gateway(nursery, make_settings, github)
    admin = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with (
        httpx.AsyncClient(base_url=ready.api_url, headers=admin) as api,
        owner(api, ready, "mallory") as mallory,
    ):
        # her proxy made before the admin registers the resource on its host...
        await proxy(mallory, "tools.example.net", "http://127.0.0.1:9")
        auth = {"auth_mode": "forward", "auth_required_users": ["*"]}
        await created(await mallory.post(f"{TARGETS}tools.example.net/auth", json=auth))
        created_resource = await api.post(
            "/api/v1/resources/", json={"uri": registered, "name": "Tools"}
        )
        assert created_resource.status_code in (200, 201), created_resource.text
        # ... and after: an owner's proxy on a registered resource's host is refused
        other = "https://other.example.net/mcp"
        assert (await api.post("/api/v1/resources/", json={"uri": other})).status_code == 201
        claimed = await mallory.post(
            TARGETS, json={"hostname": "other.example.net", "target_url": "http://127.0.0.1:9"}
        )
        assert (claimed.status_code, claimed.json()["field"]) == (403, "hostname"), claimed.text
    github.user = GitHubUser(666, "mallory", ["mallory@evil.test"])
    async with httpx.AsyncClient(base_url=ready.api_url) as http:
        flow = oauth_helpers.FlowClient(http)
        client = await flow.register()
        verifier, challenge = oauth_helpers.pkce_pair()
        start = await flow.start(client["client_id"], code_challenge=challenge, resource=registered)
        answer = await flow.approve(start)
        minted = None
        if answer.status_code in (302, 303):
            back = oauth_helpers.query_of(answer.headers["location"])
            done = await flow.exchange(
                client, oauth_helpers.Authorized(back["code"], back["state"], back["iss"], verifier)
            )
            minted = _payload(done.json()["access_token"]) if done.status_code == 200 else None
    # secure: mallory is not in OAUTH_ALLOWED_GITHUB_USERS, which the registered resource is under
    assert minted is None, f"mallory got a token for the admin's resource: aud={minted['aud']}"
    assert answer.status_code == 403, (answer.status_code, answer.headers.get("location"))


async def test_a_trusted_clients_registration_token_retargets_it_without_consent(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], github: GitHubStandIn
) -> None:
    """The admin registers a trusted client (origin admin: its users see no consent page) for
    https://app.example.com/cb and hands its credentials, registration access token included,
    to the app's developer. With RFC 7592 the holder of that token replaces its redirect_uris
    with a site the admin never approved, and the client stays trusted: a link to /authorize
    now logs any victim in silently and sends the code to that site. A change of its redirect
    URIs (or scope) makes it an ordinary client, with a consent page."""
    ready = await start_gateway(nursery, make_settings, github)
    admin = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    evil = "https://evil.example.org/steal"
    async with httpx.AsyncClient(base_url=ready.api_url, headers=admin) as api:
        made = await api.post(
            "/api/v1/oauth/clients",
            json={"name": "App", "redirect_uris": ["https://app.example.com/cb"], "public": True},
        )
        assert made.status_code == 201, made.text
        client = made.json()
    async with httpx.AsyncClient(base_url=ready.api_url) as http:
        body = {
            "client_id": client["client_id"],
            "client_name": "App",
            "redirect_uris": [evil],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }
        updated = await http.put(
            f"/register/{client['client_id']}",
            json=body,
            headers={"Authorization": f"Bearer {client['registration_access_token']}"},
        )
        flow = oauth_helpers.FlowClient(http)
        _, challenge = oauth_helpers.pkce_pair()
        start = await flow.start(client["client_id"], code_challenge=challenge, redirect_uri=evil)
        silent = None
        if start.status_code == 302:
            back = await flow.through_github(start)
            silent = back.headers.get("location", "") if back.status_code == 302 else None
    # secure: the trusted client's redirect URIs are the admin's to set, or it needs consent again
    assert not (silent and silent.startswith(evil) and "code=" in silent), (
        updated.status_code,
        silent,
    )
