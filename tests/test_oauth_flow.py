"""The authorization code flow end to end: a real gateway, a real Redis, the GitHub stand-in,
dynamic registration, PKCE, consent, resource-bound RS256 tokens, refresh rotation."""

from __future__ import annotations

import time

import httpx
import pytest
from joserfc.jwk import RSAKey

from oauthproxy.oauth.verify import TokenVerifier
from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.github_standin import GitHubStandIn, GitHubUser
from tests.oauth_helpers import REDIRECT_URI, FlowClient

RESOURCE = "https://mcp.example.com/mcp"


github = oauth_helpers.github
oauth_gateway = oauth_helpers.oauth_gateway
flow = oauth_helpers.flow


def verifier_from_jwks(issuer: str, jwks: dict[str, list[dict[str, str]]]) -> TokenVerifier:
    keys = {key["kid"]: RSAKey.import_key(dict(key)).public_key for key in jwks["keys"]}
    return TokenVerifier(issuer, keys)


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]
)
async def test_metadata_documents(flow: FlowClient, oauth_gateway: Ready, path: str) -> None:
    metadata = (await flow.http.get(path)).json()
    issuer = oauth_gateway.api_url
    assert metadata["issuer"] == issuer
    assert metadata["authorization_endpoint"] == f"{issuer}/authorize"
    assert metadata["token_endpoint"] == f"{issuer}/token"
    assert metadata["registration_endpoint"] == f"{issuer}/register"
    assert metadata["revocation_endpoint"] == f"{issuer}/revoke"
    assert metadata["introspection_endpoint"] == f"{issuer}/introspect"
    assert metadata["jwks_uri"] == f"{issuer}/jwks"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["resource_indicators_supported"] is True
    assert metadata["scopes_supported"] == ["mcp:read", "mcp:write", "mcp:admin"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["client_id_metadata_document_supported"] is True
    assert metadata["grant_types_supported"] == ["authorization_code", "refresh_token"]


async def test_code_flow_with_pkce_consent_and_resources(
    flow: FlowClient, oauth_gateway: Ready, github: GitHubStandIn
) -> None:
    github.user = GitHubUser(
        4242, "alice", ["alice@example.com"], orgs=["acme"], teams=[("acme", "ops")]
    )
    client = await flow.register(scope="mcp:read mcp:write")
    authorized = await flow.authorize(client["client_id"], scope="mcp:read", resource=RESOURCE)
    assert authorized.iss == oauth_gateway.api_url

    response = await flow.exchange(client, authorized, resource=RESOURCE)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1800
    assert body["scope"] == "mcp:read"
    assert body["refresh_token"]

    jwks = (await flow.http.get("/jwks")).json()
    verifier = verifier_from_jwks(oauth_gateway.api_url, jwks)
    claims = verifier.verify(body["access_token"], now=time.time())
    assert claims.subject == "github-4242"
    assert claims.username == "alice"
    assert claims.email == "alice@example.com"
    assert claims.groups == ("acme", "acme/ops")
    assert claims.audience == (RESOURCE,)
    assert claims.client_id == client["client_id"]
    assert claims.scopes == {"mcp:read"}


async def test_refresh_rotates_and_keeps_the_grant(flow: FlowClient, storage: Storage) -> None:
    client = await flow.register()
    first = await flow.tokens(client, resource=RESOURCE)
    refreshed = await flow.token(
        client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.headers["cache-control"] == "no-store"
    second = refreshed.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == "mcp:read mcp:write"

    sessions = await storage.oauth.sessions_of_user("alice")
    assert len(sessions) == 1
    tokens = await storage.oauth.tokens_of_session(sessions[0].session_id)
    assert len(tokens) == 2
    assert {t.audience[0] for t in tokens} == {RESOURCE}


async def test_token_without_resource_is_for_the_issuer(
    flow: FlowClient, oauth_gateway: Ready
) -> None:
    client = await flow.register(grant_types=["authorization_code"])
    body = await flow.tokens(client)
    assert "refresh_token" not in body
    jwks = (await flow.http.get("/jwks")).json()
    claims = verifier_from_jwks(oauth_gateway.api_url, jwks).verify(
        body["access_token"], now=time.time()
    )
    assert claims.audience == (oauth_gateway.api_url,)


async def test_loopback_redirect_may_use_any_port(flow: FlowClient) -> None:
    client = await flow.register(redirect_uris=["http://127.0.0.1/callback"])
    other_port = "http://127.0.0.1:51234/callback"
    authorized = await flow.authorize(client["client_id"], redirect_uri=other_port)
    response = await flow.exchange(client, authorized, redirect_uri=other_port)
    assert response.status_code == 200, response.text


async def test_public_client_needs_no_secret(flow: FlowClient) -> None:
    client = await flow.register(token_endpoint_auth_method="none")
    assert "client_secret" not in client
    body = await flow.tokens(client)
    assert body["access_token"]


async def test_consent_denied_goes_back_with_access_denied(flow: FlowClient) -> None:
    client = await flow.register()
    callback = await flow.through_github(
        await flow.start(client["client_id"], state="s1", code_challenge="x" * 43)
    )
    page = await flow.http.get(callback.headers["location"])
    assert "Test Client" in page.text
    assert "127.0.0.1:8765" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    denied = await flow.consent(page, decision="deny")
    assert denied.status_code == 303
    location = denied.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    assert "error=access_denied" in location and "state=s1" in location


async def test_consent_form_needs_its_csrf_token(flow: FlowClient) -> None:
    client = await flow.register()
    callback = await flow.through_github(
        await flow.start(client["client_id"], code_challenge="x" * 43)
    )
    page = await flow.http.get(callback.headers["location"])
    request_id = callback.headers["location"].split("request=")[1]
    forged = await flow.http.post(
        "/consent", data={"request": request_id, "csrf_token": "guess", "decision": "approve"}
    )
    assert forged.status_code == 400
    assert "location" not in forged.headers
    approved = await flow.consent(page)
    assert approved.status_code == 303
    again = await flow.consent(page)
    assert again.status_code == 400
    assert "location" not in again.headers


async def test_consent_only_in_the_browser_that_logged_in(
    flow: FlowClient, oauth_gateway: Ready
) -> None:
    client = await flow.register()
    start = await flow.start(client["client_id"], code_challenge="x" * 43)
    callback = await flow.through_github(start)
    page = await flow.http.get(callback.headers["location"])
    async with httpx.AsyncClient(base_url=oauth_gateway.api_url) as elsewhere:
        leaked = await FlowClient(elsewhere).consent(page)
    assert leaked.status_code == 400
    assert "location" not in leaked.headers
    assert "browser that logged in" in leaked.text
    approved = await flow.consent(page)
    assert approved.status_code == 303


async def test_json_token_requests_and_null_metadata(flow: FlowClient) -> None:
    client = await flow.register(client_uri=None, contacts=None, scope=None)
    assert client["scope"] == "mcp:read mcp:write"
    authorized = await flow.authorize(client["client_id"], resource=RESOURCE)
    response = await flow.http.post(
        "/token",
        json={
            "grant_type": "authorization_code",
            "code": authorized.code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": authorized.verifier,
            "resource": [RESOURCE],
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    assert response.status_code == 200, response.text
