"""How names are claimed between owners and the admin, each attack sent for real (found by an
attack hunt): the host of a resource the admin registered, the hostnames and services the admin's
global routes name, the policy `/verify` applies to a host an owner's proxy took, and what a
change to another owner's proxy tells."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import trio

from oauthproxy.models.resources import ProtectedResource
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.github_standin import GitHubStandIn, GitHubUser
from tests.oauth_helpers import FlowClient
from tests.tenants import (
    EXTERNAL,
    ROUTES,
    TARGETS,
    World,
    backend_of,
    created,
    proxy,
    settle,
    world,
)

__all__ = ["world"]

github = oauth_helpers.github

REGISTERED = "https://tools.example.net/mcp"
"""The admin's MCP server, registered, with no proxy in front of it (it checks tokens itself
through the JWKS or validate-token)."""


async def test_an_owner_cannot_claim_the_host_of_the_admins_registered_resource(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    """OAUTH_ALLOWED_GITHUB_USERS is alice. The admin registers an MCP server at
    tools.example.net. An owner token makes a proxy named tools.example.net open to everyone
    (`auth_required_users: ["*"]`): the login for the admin's resource is then under the
    owner's policy, not the global allowlist, and mallory gets a token for the admin's server,
    which /verify for that host passes too."""
    ready = await oauth_helpers.start_gateway(nursery, make_settings, github)
    await storage.resources.create(ProtectedResource(uri=REGISTERED, name="Admin tools"))
    admin = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=admin) as api:
        made = await api.post("/api/v1/tokens/generate", json={"name": "eve"})
        assert made.status_code == 201, made.text
        eve = {"Authorization": f"Bearer {made.json()['token']}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=eve) as owner:
        claimed = await owner.post(
            "/api/v1/proxy/targets/",
            json={
                "hostname": "tools.example.net",
                "target_url": "http://127.0.0.1:9",
                "enable_https": False,
            },
        )
        if claimed.status_code == 201:
            opened = await owner.post(
                "/api/v1/proxy/targets/tools.example.net/auth",
                json={"auth_required_users": ["*"]},
            )
            assert opened.status_code == 200, opened.text
    github.user = GitHubUser(666, "mallory", ["mallory@evil.test"])
    async with httpx.AsyncClient(base_url=ready.api_url) as http:
        flow = FlowClient(http)
        client = await flow.register()
        _, challenge = oauth_helpers.pkce_pair()
        start = await flow.start(client["client_id"], code_challenge=challenge, resource=REGISTERED)
        answer = await flow.approve(start)
        # Secure: mallory, whom the global allowlist refuses, gets no code for the admin's
        # resource (the proxy was refused, or does not widen who may log in for it).
        assert answer.status_code == 403, (
            claimed.status_code,
            answer.status_code,
            answer.headers.get("location"),
        )


async def test_an_owners_proxy_on_the_admins_resource_host_does_not_open_verify(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    """The same claim, to the end: mallory's token for the admin's resource, and /verify for
    the resource's host (an external proxy's ForwardAuth in front of the admin's server)."""
    ready = await oauth_helpers.start_gateway(nursery, make_settings, github)
    await storage.resources.create(ProtectedResource(uri=REGISTERED, name="Admin tools"))
    admin = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=admin) as api:
        made = await api.post("/api/v1/tokens/generate", json={"name": "eve"})
        eve = {"Authorization": f"Bearer {made.json()['token']}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=eve) as owner:
        body = {"hostname": "tools.example.net", "target_url": "http://127.0.0.1:9",
                "enable_https": False}  # fmt: skip
        claimed = await owner.post("/api/v1/proxy/targets/", json=body)
        assert claimed.status_code in (201, 403, 409), claimed.text
        if claimed.status_code == 201:
            path = "/api/v1/proxy/targets/tools.example.net/auth"
            opened = await owner.post(path, json={"auth_required_users": ["*"]})
            assert opened.status_code == 200, opened.text
    github.user = GitHubUser(666, "mallory", ["mallory@evil.test"])
    async with httpx.AsyncClient(base_url=ready.api_url) as http:
        flow = FlowClient(http)
        client = await flow.register()
        verifier, challenge = oauth_helpers.pkce_pair()
        start = await flow.start(client["client_id"], code_challenge=challenge, resource=REGISTERED)
        answer = await flow.approve(start)
        if answer.status_code not in (302, 303):
            return  # refused: secure
        code = oauth_helpers.query_of(answer.headers["location"])["code"]
        issued = await flow.token(
            client,
            grant_type="authorization_code",
            code=code,
            redirect_uri=oauth_helpers.REDIRECT_URI,
            code_verifier=verifier,
            resource=REGISTERED,
        )
        assert issued.status_code == 200, issued.text
        access = issued.json()["access_token"]
        verified = await http.get(
            "/verify",
            headers={"X-Forwarded-Host": "tools.example.net", "X-Forwarded-Proto": "https",
                     "Authorization": f"Bearer {access}"},
        )  # fmt: skip
        checked = await http.post(
            "/api/v1/resources/https%3A%2F%2Ftools.example.net%2Fmcp/validate-token",
            headers=admin,
            json={"token": access},
        )
        assert (verified.status_code, checked.json().get("valid")) == (403, False), (
            verified.status_code,
            verified.text,
            checked.text,
        )


async def test_an_owner_cannot_claim_the_hostname_an_admins_global_route_sends_to(
    world: World,
) -> None:
    """The admin sends `/echo/shared/` of every hostname to its helper proxy, and later deletes
    that proxy (nothing stops it: only an owner's own routes hold a name). Alice claims the
    freed hostname: the admin's global route now sends Bob's visitors to Alice's server."""
    api = world.api
    await proxy(api, "helper.example.com", world.url("marker"))
    shared = {
        "route_id": "shared-helper",
        "path_pattern": "/echo/shared/",
        "target_type": "hostname",
        "target_value": "helper.example.com",
        "priority": 100,
        "scope": "global",
    }
    await created(await api.post(ROUTES, json=shared))
    await settle(world)
    assert await backend_of(world.public, "bob.example.com", "/echo/shared/x") == "marker"
    deleted = await api.delete(f"{TARGETS}helper.example.com")
    claimed = None
    if deleted.status_code == 200:
        claimed = await world.alice.post(
            TARGETS,
            json={"hostname": "helper.example.com", "target_url": world.url("attacker"),
                  "enable_https": False},
        )  # fmt: skip
    await settle(world)
    reached = await backend_of(world.public, "bob.example.com", "/echo/shared/x")
    assert reached != "attacker", (deleted.status_code, claimed and claimed.status_code)


async def test_an_owner_cannot_claim_the_service_an_admins_global_route_sends_to(
    world: World,
) -> None:
    """The same with an external service name: the admin's global route to service
    `helper-svc`, the service deleted, Alice registers `helper-svc`."""
    api = world.api
    body = {"service_name": "helper-svc", "target_url": world.url("marker")}
    await created(await api.post(EXTERNAL, json=body))
    shared = {
        "route_id": "shared-svc",
        "path_pattern": "/echo/shared-svc/",
        "target_type": "service",
        "target_value": "helper-svc",
        "priority": 100,
        "scope": "global",
    }
    await created(await api.post(ROUTES, json=shared))
    await settle(world)
    assert await backend_of(world.public, "bob.example.com", "/echo/shared-svc/x") == "marker"
    deleted = await api.delete(f"{EXTERNAL}/helper-svc")
    claimed = None
    if deleted.status_code == 200:
        claimed = await world.alice.post(
            EXTERNAL, json={"service_name": "helper-svc", "target_url": world.url("attacker")}
        )
    await settle(world)
    reached = await backend_of(world.public, "bob.example.com", "/echo/shared-svc/x")
    assert reached != "attacker", (deleted.status_code, claimed and claimed.status_code)


async def test_an_owners_proxy_does_not_set_the_policy_of_verify_for_an_unproxied_host(
    nursery: trio.Nursery,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    """ForwardAuth without any registered resource: the admin's Traefik asks /verify (on
    loopback) for app.internal.example, which no proxy serves, so the global allowlist (alice)
    decides. An owner makes a proxy of that name open to everyone; mallory logs in for it and
    her token passes /verify for the admin's app."""
    ready = await oauth_helpers.start_gateway(nursery, make_settings, github)
    admin = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=admin) as api:
        made = await api.post("/api/v1/tokens/generate", json={"name": "eve"})
        eve = {"Authorization": f"Bearer {made.json()['token']}"}
    host = "app.internal.example"
    async with httpx.AsyncClient(base_url=ready.api_url, headers=eve) as owner:
        body = {"hostname": host, "target_url": "http://127.0.0.1:9", "enable_https": False}
        claimed = await owner.post("/api/v1/proxy/targets/", json=body)
        assert claimed.status_code == 201, claimed.text
        opened = await owner.post(
            f"/api/v1/proxy/targets/{host}/auth", json={"auth_required_users": ["*"]}
        )
        assert opened.status_code == 200, opened.text
    github.user = GitHubUser(666, "mallory", ["mallory@evil.test"])
    async with httpx.AsyncClient(base_url=ready.api_url) as http:
        flow = FlowClient(http)
        client = await flow.register()
        tokens = await flow.tokens(client, resource=f"https://{host}")
        verified = await http.get(
            "/verify",
            headers={"X-Forwarded-Host": host, "X-Forwarded-Proto": "https",
                     "Authorization": f"Bearer {tokens['access_token']}"},
        )  # fmt: skip
    assert verified.status_code == 403, (verified.status_code, verified.text)


async def test_a_change_to_another_owners_proxy_reads_as_missing_whatever_cert_it_names(
    world: World,
) -> None:
    """docs/security.md: changing another owner's proxy answers exactly as for a proxy that
    does not exist. Naming one of her own certificates, Alice tells Bob's proxies (403,
    naming the hostname as another owner's) from free names (404)."""
    made = await world.alice.post(
        "/api/v1/certificates/self-signed",
        json={"cert_name": "alice-cert", "domains": ["alice.example.com"]},
    )
    assert made.status_code in (200, 201, 202), made.text
    change = {"cert_name": "alice-cert"}
    bobs = await world.alice.put(f"{TARGETS}bob-secret.example.com", json=change)
    free = await world.alice.put(f"{TARGETS}nobody-here.example.com", json=change)
    assert (bobs.status_code, bobs.json()["field"]) == (free.status_code, free.json()["field"]), (
        bobs.text,
        free.text,
    )
