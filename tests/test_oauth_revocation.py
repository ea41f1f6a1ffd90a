"""Revocation (RFC 7009) and its stream, introspection (RFC 7662), and the signing keys that
every replica shares."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import httpx
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from oauthproxy.oauth.verify import InvalidToken, load_verifier
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.github_standin import GitHubStandIn
from tests.oauth_helpers import FlowClient, start_gateway

github = oauth_helpers.github
oauth_gateway = oauth_helpers.oauth_gateway
flow = oauth_helpers.flow


def credentials(client: dict[str, str]) -> dict[str, str]:
    return {"client_id": client["client_id"], "client_secret": client["client_secret"]}


async def introspect(flow: FlowClient, token: str, **auth: str) -> dict[str, object]:
    response = await flow.http.post("/introspect", data={"token": token, **auth})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_revoking_an_access_token_reaches_the_stream(
    flow: FlowClient, storage: Storage
) -> None:
    client = await flow.register()
    issued = await flow.tokens(client)
    active = await introspect(flow, issued["access_token"], **credentials(client))
    assert active["active"] is True and active["username"] == "alice"

    async def revoke_soon() -> None:
        await trio.sleep(0.2)
        response = await flow.http.post(
            "/revoke",
            data={
                "token": issued["access_token"],
                "token_type_hint": "access_token",
                **credentials(client),
            },
        )
        assert response.status_code == 200

    async with trio.open_nursery() as nursery:
        nursery.start_soon(revoke_soon)
        entries = await storage.oauth.revocations_since("0", block_ms=5000)
    [record] = await storage.oauth.tokens_of_user("alice")
    assert [(e.jti, int(e.expires_at)) for e in entries] == [
        (record.jti, int(record.expires_at.timestamp()))
    ]
    assert record.revoked
    assert (await introspect(flow, issued["access_token"], **credentials(client))) == {
        "active": False
    }
    assert await storage.oauth.revocations_since(entries[-1].id) == []


async def test_revoking_a_refresh_token_ends_the_session(
    flow: FlowClient, storage: Storage
) -> None:
    client = await flow.register()
    issued = await flow.tokens(client)
    response = await flow.http.post(
        "/revoke", data={"token": issued["refresh_token"], **credentials(client)}
    )
    assert response.status_code == 200
    [session] = await storage.oauth.sessions_of_user("alice")
    assert session.revoked
    refreshed = await flow.token(
        client, grant_type="refresh_token", refresh_token=issued["refresh_token"]
    )
    assert refreshed.json()["error"] == "invalid_grant"
    assert len(await storage.oauth.revocations_since("0")) == 1


async def test_another_client_cannot_revoke_or_introspect(
    flow: FlowClient, storage: Storage
) -> None:
    client = await flow.register()
    other = await flow.register(client_name="Other")
    issued = await flow.tokens(client)
    for token in (issued["access_token"], issued["refresh_token"]):
        assert (await introspect(flow, token, **credentials(other))) == {"active": False}
        response = await flow.http.post("/revoke", data={"token": token, **credentials(other)})
        assert response.status_code == 200
    assert await storage.oauth.revocations_since("0") == []
    assert (await introspect(flow, issued["refresh_token"], **credentials(client)))["active"]


async def test_revocation_needs_client_authentication(flow: FlowClient) -> None:
    response = await flow.http.post("/revoke", data={"token": "whatever"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    client = await flow.register()
    unknown_hint = await flow.http.post(
        "/revoke", data={"token": "x", "token_type_hint": "id_token", **credentials(client)}
    )
    assert unknown_hint.json()["error"] == "unsupported_token_type"


async def test_the_admin_token_introspects_any_token(
    flow: FlowClient, oauth_gateway: Ready
) -> None:
    client = await flow.register()
    issued = await flow.tokens(client, resource="https://mcp.example.com")
    admin = {"Authorization": f"Bearer {oauth_gateway.admin_token.secret}"}
    body = (
        await flow.http.post("/introspect", data={"token": issued["access_token"]}, headers=admin)
    ).json()
    assert body["active"] is True
    assert body["aud"] == ["https://mcp.example.com"]
    assert body["client_id"] == client["client_id"]
    assert body["iss"] == oauth_gateway.api_url
    forged = {"Authorization": "Bearer not-a-token"}
    refused = await flow.http.post("/introspect", data={"token": "x"}, headers=forged)
    assert refused.status_code == 401


async def test_an_owner_token_introspects_nothing_more_than_an_anonymous_caller(
    flow: FlowClient, oauth_gateway: Ready
) -> None:
    """Only the admin token introspects any token: an owner token (a tenant's, for the admin API)
    gets what a caller without credentials gets."""
    client = await flow.register()
    issued = await flow.tokens(client, resource="https://mcp.example.com")
    admin = {"Authorization": f"Bearer {oauth_gateway.admin_token.secret}"}
    generated = await flow.http.post(
        "/api/v1/tokens/generate", json={"name": "tenant"}, headers=admin
    )
    assert generated.status_code == 201, generated.text
    owner = {"Authorization": f"Bearer {generated.json()['token']}"}
    for token in (issued["access_token"], issued["refresh_token"]):
        as_owner = await flow.http.post("/introspect", data={"token": token}, headers=owner)
        anonymous = await flow.http.post("/introspect", data={"token": token})
        assert as_owner.status_code == anonymous.status_code == 401, as_owner.text
        assert as_owner.json() == anonymous.json()
        assert as_owner.json()["error"] == "invalid_client"
        assert "active" not in as_owner.text
    # with its client's credentials beside the owner token, a client still sees its own token
    own = await flow.http.post(
        "/introspect", data={"token": issued["access_token"], **credentials(client)}, headers=owner
    )
    assert own.json()["active"] is True


async def test_load_verifier_checks_the_servers_tokens(
    flow: FlowClient, storage: Storage, make_settings: Callable[..., Settings], oauth_gateway: Ready
) -> None:
    client = await flow.register()
    issued = await flow.tokens(client)
    settings = make_settings(oauth_issuer=oauth_gateway.api_url)
    verifier = await load_verifier(storage, settings)
    claims = verifier.verify(issued["access_token"], now=time.time())
    assert claims.username == "alice"
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(issued["access_token"], now=time.time() + 3600)
    other_issuer = await load_verifier(storage, make_settings(base_domain="example.org"))
    with pytest.raises(InvalidToken, match="wrong issuer"):
        other_issuer.verify(issued["access_token"], now=time.time())


async def test_replicas_share_the_generated_key(
    nursery: trio.Nursery,
    flow: FlowClient,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    second = await start_gateway(nursery, make_settings, github)
    async with httpx.AsyncClient(base_url=second.api_url) as other:
        theirs = (await other.get("/jwks")).json()
    ours = (await flow.http.get("/jwks")).json()
    assert ours == theirs
    assert len(ours["keys"]) == 1
    assert ours["keys"][0]["alg"] == "RS256" and ours["keys"][0]["kty"] == "RSA"


async def test_a_configured_key_signs_and_the_generated_one_stays_published(
    nursery: trio.Nursery,
    flow: FlowClient,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    generated = (await flow.http.get("/jwks")).json()["keys"][0]["kid"]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    configured = await start_gateway(
        nursery, make_settings, github, oauth_jwt_private_key_b64=base64.b64encode(pem).decode()
    )
    async with httpx.AsyncClient(base_url=configured.api_url) as http:
        kids = {key["kid"] for key in (await http.get("/jwks")).json()["keys"]}
        client = await FlowClient(http).register()
        issued = await FlowClient(http).tokens(client)
    assert generated in kids and len(kids) == 2
    header = base64.urlsafe_b64decode(issued["access_token"].split(".")[0] + "==")
    assert generated.encode() not in header
