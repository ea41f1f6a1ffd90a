"""The OAuth admin and status APIs on a real gateway, with clients, sessions and tokens made by
real authorization flows (GitHub stand-in, consent, PKCE) and a real protected proxy."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.backend import serve_backend
from tests.eventually import eventually
from tests.github_standin import GitHubStandIn
from tests.jwt_text import unverified_claims
from tests.oauth_helpers import REDIRECT_URI, FlowClient, pkce_pair, query_of

HOST = "mcp.example.com"
OTHER_HOST = "other.example.com"
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)

github = oauth_helpers.github
oauth_gateway = oauth_helpers.oauth_gateway
flow = oauth_helpers.flow


@pytest.fixture
async def gateway(oauth_gateway: Ready) -> Ready:
    """The gateway of `api` (the admin client): the one wired to the GitHub stand-in."""
    return oauth_gateway


@pytest.fixture
async def origin(nursery: trio.Nursery, storage: Storage, oauth_gateway: Ready) -> str:
    """A protected proxy for HOST (every GitHub user may pass); its resource URI."""
    backend: int = await nursery.start(functools.partial(serve_backend, "protected"))
    target = {
        "hostname": HOST,
        "target_url": f"http://127.0.0.1:{backend}",
        "auth_enabled": True,
        "auth_required_users": ["*"],
    }
    await storage.proxies.create(ProxyTarget.model_validate(target))
    return f"http://{HOST}:{oauth_gateway.http_port}"


@pytest.fixture
async def public(oauth_gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    """Speaks to the data plane as a client of HOST."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{oauth_gateway.http_port}",
        headers={"Host": f"{HOST}:{oauth_gateway.http_port}"},
        limits=NO_KEEPALIVE,
    ) as client:
        yield client


def claims_of(token: str) -> dict[str, Any]:
    return unverified_claims(token)


async def once_served(
    public: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> httpx.Response:
    """GET `path` once the proxy serves it (a proxy's instance, a route, start asynchronously)."""

    async def known() -> httpx.Response | None:
        response = await public.get(path, headers=headers)
        return response if response.status_code != 404 else None

    return await eventually(known, what=f"{path} served")


async def proxy_answer(public: httpx.AsyncClient, token: str) -> httpx.Response:
    return await once_served(public, "/echo", {"Authorization": f"Bearer {token}"})


async def ok(api: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def two_logins(flow: FlowClient, resource: str) -> tuple[dict[str, Any], list[str]]:
    """A client with two sessions: one login refreshed once (2 tokens), one not (1 token)."""
    client = await flow.register()
    first = await flow.tokens(client, resource=resource)
    refreshed = await flow.token(
        client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert refreshed.status_code == 200, refreshed.text
    second = await flow.tokens(client, resource=resource)
    tokens = [first["access_token"], refreshed.json()["access_token"], second["access_token"]]
    return client, [claims_of(token)["jti"] for token in tokens]


async def test_clients_tokens_sessions_and_metrics_count_what_was_issued(
    flow: FlowClient, api: httpx.AsyncClient
) -> None:
    client, jtis = await two_logins(flow, "https://mcp.example.com")
    client_id = client["client_id"]

    clients = await ok(api, "/api/v1/oauth/clients")  # with any the gateway registers itself
    [listed] = [c for c in clients if c["origin"] == "dynamic"]
    assert listed["client_id"] == client_id
    assert listed["sessions"] == {"total": 2, "active": 2, "revoked": 0, "expired": 0}
    assert listed["tokens"] == {"total": 3, "active": 3, "revoked": 0, "expired": 0}
    assert not {"client_secret", "client_secret_hash"} & set(listed)
    assert await ok(api, f"/api/v1/oauth/clients/{client_id}") == listed
    assert await ok(api, "/api/v1/oauth/clients", active_only="true") == [listed]

    tokens = await ok(api, f"/api/v1/oauth/clients/{client_id}/tokens")
    assert sorted(token["jti"] for token in tokens) == sorted(jtis)
    assert {token["status"] for token in tokens} == {"active"}

    statistics = await ok(api, "/api/v1/oauth/tokens")
    assert (statistics["total"], statistics["active"], statistics["revoked"]) == (3, 3, 0)
    assert statistics["by_client"][client_id]["active"] == 3
    assert statistics["by_user"]["alice"]["total"] == 3

    token = await ok(api, f"/api/v1/oauth/tokens/{jtis[0]}")
    assert (token["client_id"], token["username"], token["status"]) == (
        client_id,
        "alice",
        "active",
    )
    assert token["audience"] == ["https://mcp.example.com"]

    sessions = await ok(api, "/api/v1/oauth/sessions")
    assert len(sessions) == 2
    assert sorted(s["tokens"]["total"] for s in sessions) == [1, 2]
    assert {s["username"] for s in sessions} == {"alice"}
    refreshed = next(s for s in sessions if s["tokens"]["total"] == 2)
    detail = await ok(api, f"/api/v1/oauth/sessions/{refreshed['session_id']}")
    assert sorted(t["jti"] for t in detail["access_tokens"]) == sorted(jtis[:2])

    metrics = await ok(api, "/api/v1/oauth/metrics")
    assert metrics["clients"]["total"] == len(clients)
    assert metrics["clients"]["by_origin"]["dynamic"] == 1
    assert metrics["clients"]["with_active_sessions"] == 1
    assert metrics["sessions"]["active"] == 2
    assert metrics["tokens"] == {"issued": 3, "active": 3, "revoked": 0, "expired": 0}
    assert [row["client_id"] for row in metrics["per_client"]] == [client_id]
    [alice] = metrics["per_user"]
    assert (alice["username"], alice["sessions"]["total"], alice["tokens"]["total"]) == (
        "alice",
        2,
        3,
    )


async def test_status_endpoints_summarise_the_same_numbers(
    flow: FlowClient, api: httpx.AsyncClient, oauth_gateway: Ready
) -> None:
    client, _jtis = await two_logins(flow, "https://mcp.example.com")
    status = await ok(api, "/api/v1/oauth/status")
    assert status["status"] == "healthy"
    assert status["issuer"] == oauth_gateway.api_url
    assert status["clients"]["by_origin"]["dynamic"] == 1
    assert status["sessions"]["active"] == 2
    assert status["tokens"]["active"] == 3
    assert (status["protected_proxies"], status["registered_resources"]) == (0, 0)

    clients = await ok(api, "/api/v1/oauth/status/clients")
    assert clients["by_origin"]["dynamic"] == 1
    assert clients["tokens_by_client"][client["client_id"]]["total"] == 3
    tokens = await ok(api, "/api/v1/oauth/status/tokens")
    assert tokens == await ok(api, "/api/v1/oauth/tokens")
    sessions = await ok(api, "/api/v1/oauth/status/sessions")
    assert (sessions["total"], sessions["active"]) == (2, 2)
    assert sessions["by_user"] == {"alice": {"total": 2, "active": 2, "revoked": 0, "expired": 0}}


async def test_revoking_a_session_makes_the_proxy_refuse_its_token(
    flow: FlowClient,
    api: httpx.AsyncClient,
    origin: str,
    public: httpx.AsyncClient,
    storage: Storage,
) -> None:
    client = await flow.register()
    token = (await flow.tokens(client, resource=origin))["access_token"]
    assert (await proxy_answer(public, token)).status_code == 200

    other = ProxyTarget.model_validate({"hostname": OTHER_HOST, "target_url": "http://127.0.0.1:9"})
    await storage.proxies.create(other)
    [session] = await ok(api, f"/api/v1/oauth/proxies/{HOST.upper()}/sessions")
    assert session["resources"] == [origin]
    assert await ok(api, f"/api/v1/oauth/proxies/{OTHER_HOST}/sessions") == []
    proxies = await ok(api, "/api/v1/oauth/proxies")
    assert [(p["hostname"], p["auth_enabled"], p["active_sessions"]) for p in proxies] == [
        (HOST, True, 1),
        (OTHER_HOST, False, 0),
    ]

    revoked = await api.delete(f"/api/v1/oauth/sessions/{session['session_id']}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_tokens"] == [claims_of(token)["jti"]]

    async def refused_now() -> httpx.Response | None:
        answer = await proxy_answer(public, token)
        return answer if answer.status_code != 200 else None

    refused = await eventually(refused_now, what="the revoked token refused", within=5)
    assert (refused.status_code, refused.json()["detail"]) == (401, "revoked")

    assert await ok(api, "/api/v1/oauth/sessions") == []
    assert await ok(api, f"/api/v1/oauth/proxies/{HOST}/sessions") == []
    [kept] = await ok(api, f"/api/v1/oauth/proxies/{HOST}/sessions", include_revoked="true")
    assert kept["status"] == "revoked"
    assert (await ok(api, "/api/v1/oauth/tokens"))["revoked"] == 1


async def test_a_client_the_admin_registers_skips_consent(
    flow: FlowClient, api: httpx.AsyncClient
) -> None:
    body = {"name": "Ops tool", "redirect_uris": [REDIRECT_URI], "scope": "mcp:read"}
    response = await api.post("/api/v1/oauth/clients", json=body)
    assert response.status_code == 201, response.text
    client = response.json()
    assert (client["origin"], client["client_name"], client["scope"]) == (
        "admin",
        "Ops tool",
        "mcp:read",
    )
    assert client["client_secret"]

    _verifier, challenge = pkce_pair()
    started = await flow.start(client["client_id"], code_challenge=challenge, state="s")
    callback = await flow.through_github(started)
    assert query_of(callback.headers["location"]).keys() == {"code", "state", "iss"}  # no consent
    shown = await ok(api, f"/api/v1/oauth/clients/{client['client_id']}")
    assert (shown["origin"], shown["confidential"]) == ("admin", True)
    assert "client_secret" not in shown


async def test_admin_registration_refuses_bad_metadata(api: httpx.AsyncClient) -> None:
    body = {"name": "Bad", "redirect_uris": ["http://example.com/callback"]}
    response = await api.post("/api/v1/oauth/clients", json=body)
    assert response.status_code == 422
    assert (response.json()["error"], response.json()["field"]) == (
        "validation_error",
        "redirect_uris.0",
    )
    assert "http only on localhost" in response.json()["detail"]


async def test_a_test_token_passes_the_proxy_and_is_revocable(
    api: httpx.AsyncClient, origin: str, public: httpx.AsyncClient
) -> None:
    body = {"resource": origin, "scope": "mcp:read", "username": "tester", "lifetime": 120}
    response = await api.post("/api/v1/oauth/test-tokens", json=body)
    assert response.status_code == 201, response.text
    minted = response.json()
    assert (minted["token_type"], minted["expires_in"], minted["scope"]) == (
        "Bearer",
        120,
        "mcp:read",
    )
    claims = claims_of(minted["access_token"])
    assert (claims["aud"], claims["username"], claims["jti"]) == ([origin], "tester", minted["jti"])

    answer = await proxy_answer(public, minted["access_token"])
    assert answer.status_code == 200
    assert answer.json()["headers"]["x-auth-user-name"] == "tester"
    [session] = await ok(api, "/api/v1/oauth/sessions")
    assert (session["client_id"], session["session_id"]) == (
        "oauthproxy-test-tokens",
        minted["session_id"],
    )
    await api.delete(f"/api/v1/oauth/sessions/{minted['session_id']}")

    async def refused() -> bool:
        return (await proxy_answer(public, minted["access_token"])).status_code != 200

    await eventually(refused, what="the revoked token refused", within=5)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"resource": "not a uri"}, "resource"),
        ({"resource": "https://mcp.example.com", "scope": "root"}, "scope"),
        ({"resource": "https://mcp.example.com", "lifetime": 0}, "lifetime"),
    ],
)
async def test_test_tokens_refuse_bad_requests(
    api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await api.post("/api/v1/oauth/test-tokens", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == field


async def test_health_names_the_key_the_jwks_serves(
    api: httpx.AsyncClient, oauth_gateway: Ready
) -> None:
    health = await ok(api, "/api/v1/oauth/health")
    jwks = (await api.get("/jwks")).json()
    assert health["status"] == "healthy"
    assert health["issuer"] == oauth_gateway.api_url
    assert health["signing_key"]["present"] is True
    assert health["signing_key"]["kid"] in [key["kid"] for key in jwks["keys"]]
    assert health["jwks"]["reachable"] is True
    assert health["github"]["configured"] is True


async def test_health_without_github_is_degraded(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], github: GitHubStandIn
) -> None:
    ready = await oauth_helpers.start_gateway(nursery, make_settings, github, github_client_id=None)
    headers = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=headers) as other:
        health = await ok(other, "/api/v1/oauth/health")
    assert (health["status"], health["github"]["configured"]) == ("degraded", False)
    assert health["signing_key"]["source"].startswith("generated")


ADMIN_ENDPOINTS = [
    ("GET", "/api/v1/oauth/clients"),
    ("POST", "/api/v1/oauth/clients"),
    ("GET", "/api/v1/oauth/clients/x"),
    ("GET", "/api/v1/oauth/clients/x/tokens"),
    ("GET", "/api/v1/oauth/tokens"),
    ("GET", "/api/v1/oauth/tokens/x"),
    ("GET", "/api/v1/oauth/sessions"),
    ("GET", "/api/v1/oauth/sessions/x"),
    ("DELETE", "/api/v1/oauth/sessions/x"),
    ("GET", "/api/v1/oauth/metrics"),
    ("GET", "/api/v1/oauth/health"),
    ("GET", "/api/v1/oauth/proxies"),
    ("GET", "/api/v1/oauth/proxies/x.example.com/sessions"),
    ("POST", "/api/v1/oauth/test-tokens"),
    ("GET", "/api/v1/oauth/status"),
    ("GET", "/api/v1/oauth/status/clients"),
    ("GET", "/api/v1/oauth/status/tokens"),
    ("GET", "/api/v1/oauth/status/sessions"),
]


async def assert_admin_only(api: httpx.AsyncClient, endpoints: list[tuple[str, str]]) -> None:
    """Each endpoint answers 401 without a token and 403 to a token that is not the admin's."""
    generated = await api.post("/api/v1/tokens/generate", json={"name": "ci"})
    other = {"Authorization": f"Bearer {generated.json()['token']}"}
    for method, path in endpoints:
        anonymous = await api.request(method, path, headers={"Authorization": ""})
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.json()["error"] == "unauthorized"
        refused = await api.request(method, path, headers=other)
        assert refused.status_code == 403, (method, path)
        assert refused.json()["error"] == "forbidden"


async def test_every_endpoint_needs_the_admin_token(api: httpx.AsyncClient) -> None:
    await assert_admin_only(api, ADMIN_ENDPOINTS)


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/api/v1/oauth/clients/mcp_unknown", "client"),
        ("GET", "/api/v1/oauth/clients/mcp_unknown/tokens", "client"),
        ("GET", "/api/v1/oauth/clients/https%3A%2F%2Fapp.example.com%2Fclient.json", "client"),
        ("GET", "/api/v1/oauth/tokens/0123abcd", "token"),
        ("GET", "/api/v1/oauth/sessions/0123abcd", "session"),
        ("DELETE", "/api/v1/oauth/sessions/0123abcd", "session"),
        ("GET", "/api/v1/oauth/proxies/nowhere.example.com/sessions", "proxy"),
    ],
)
async def test_unknown_ids_are_json_404s(
    api: httpx.AsyncClient, method: str, path: str, kind: str
) -> None:
    response = await api.request(method, path)
    assert response.status_code == 404
    assert (response.json()["error"], response.json()["field"]) == ("not_found", kind)


async def test_a_public_admin_client_gets_tokens_without_a_secret(
    flow: FlowClient, api: httpx.AsyncClient
) -> None:
    body = {"name": "Native", "redirect_uris": [REDIRECT_URI], "public": True}
    client = (await api.post("/api/v1/oauth/clients", json=body)).json()
    assert "client_secret" not in client
    authorized = await flow.authorize(client["client_id"], resource="https://mcp.example.com")
    exchanged = await flow.exchange(client, authorized)
    assert exchanged.status_code == 200, exchanged.text
    [listed] = await ok(api, "/api/v1/oauth/clients", active_only="true")
    assert (listed["client_id"], listed["confidential"]) == (client["client_id"], False)
