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

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.oauth.verify import InvalidToken, load_verifier
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, oauth_sessions
from tests import oauth_helpers
from tests.backend import serve_backend
from tests.eventually import eventually
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


async def _guarded_mcp_test(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> Ready:
    """A gateway serving `mcp.test`, an echo backend behind its OAuth for any logged-in user,
    with the revocation stream's cap patched to 100 by the caller."""
    ready = await start_gateway(nursery, make_settings, github, oauth_allowed_github_users="*")
    backend = await nursery.start(serve_backend, "mcp")
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {
                "hostname": "mcp.test",
                "target_url": f"http://127.0.0.1:{backend}",
                "auth_enabled": True,
                "auth_required_users": ["*"],
            }
        )
    )
    return ready


async def test_a_flood_of_revocations_does_not_unrevoke_a_stolen_token_on_a_new_replica(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The data plane learns revocations only from `oauth:revocations`, capped at
    REVOCATIONS_MAX_LENGTH (100,000) entries; a replica that starts reads what is left of it.
    Any user who may log in can fill the stream with their own revocations: refresh N times
    (each refresh leaves one more live access token in the session), then revoke the refresh
    token, which revokes the whole session: N entries in one transaction, trimming the stream's
    older entries. A token the admin revoked before (a stolen one) is then accepted by every
    replica that starts afterwards (a restart, a scale-up) until it expires. Scaled down here
    (the cap patched to 100, 300 refreshes instead of 100,000+). Revocations in force are
    now also kept in `oauth:revoked`, trimmed by expiry, which a starting replica reads first."""
    monkeypatch.setattr(oauth_sessions, "REVOCATIONS_MAX_LENGTH", 100)
    first = await _guarded_mcp_test(nursery, storage, make_settings, github)
    admin = {"Authorization": f"Bearer {first.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=first.api_url, headers=admin) as api:
        body = {"resource": "http://mcp.test", "scope": "mcp:read", "username": "victim"}
        minted = (await api.post("/api/v1/oauth/test-tokens", json=body)).json()
        stolen = minted["access_token"]
        deleted = await api.delete(f"/api/v1/oauth/sessions/{minted['session_id']}")
        assert deleted.status_code == 200, deleted.text
    async with httpx.AsyncClient(base_url=first.api_url) as http:
        flow = FlowClient(http)
        client = await flow.register()
        tokens = await flow.tokens(client)
        refresh = tokens["refresh_token"]
        for _ in range(300):
            answer = await flow.token(client, grant_type="refresh_token", refresh_token=refresh)
            assert answer.status_code == 200, answer.text
            refresh = answer.json()["refresh_token"]
        revoked = await http.post(
            "/revoke",
            data={
                "token": refresh,
                "client_id": client["client_id"],
                "client_secret": client["client_secret"],
            },
        )
        assert revoked.status_code == 200
    left = await storage.oauth.revocations_since("0", count=100_000)
    assert minted["jti"] not in [entry.jti for entry in left]  # trimmed by the flood
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{first.http_port}") as public:
        running = await public.get(
            "/echo/x", headers={"Host": "mcp.test", "Authorization": f"Bearer {stolen}"}
        )
    assert running.status_code == 401  # the replica that was running when it was revoked
    second = await start_gateway(
        nursery, make_settings, github, oauth_allowed_github_users="*", oauth_issuer=first.api_url
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{second.http_port}") as public:

        async def refused() -> bool:
            answer = await public.get(
                "/echo/x", headers={"Host": "mcp.test", "Authorization": f"Bearer {stolen}"}
            )
            assert answer.status_code in (401, 404), answer.status_code  # (404: not up yet)
            return answer.status_code == 401

        await eventually(refused, what="the stolen token refused by the new replica")


async def test_a_session_revoked_inside_the_leeway_takes_its_expired_token_with_it(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    """The verifier accepts a token up to LEEWAY_SECONDS past its `exp`, and the guard keeps
    a revocation that long (4b0b745); but the token's record, which revocation walks, expired
    at `exp` exactly. So a logout (the refresh token revoked) in the seconds after a token's
    expiry published nothing for it, and the token passed everywhere for the rest of the
    leeway. The record now lives REVOKED_KEPT_SECONDS past `exp`."""
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {
                "hostname": "open.example.com",
                "target_url": "http://127.0.0.1:9",
                "auth_enabled": True,
                "auth_required_users": ["*"],
            }
        )
    )
    ready = await start_gateway(nursery, make_settings, github, oauth_access_token_lifetime=1)
    async with httpx.AsyncClient(base_url=ready.api_url) as http:
        flow = FlowClient(http)
        client = await flow.register()
        tokens = await flow.tokens(client, resource="https://open.example.com")
        stolen = {"X-Forwarded-Host": "open.example.com"}
        stolen["Authorization"] = f"Bearer {tokens['access_token']}"
        assert (await http.get("/verify", headers=stolen)).status_code == 200
        await trio.sleep(2.2)  # past `exp`, inside the leeway: still accepted
        assert (await http.get("/verify", headers=stolen)).status_code == 200
        logout = {"token": tokens["refresh_token"], **credentials(client)}
        assert (await http.post("/revoke", data=logout)).status_code == 200

        async def refused() -> bool:
            return (await http.get("/verify", headers=stolen)).status_code == 401

        await eventually(refused, what="the expired token of the revoked session is refused")


async def test_a_running_replica_outrun_by_a_flood_still_learns_every_revocation(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A running replica reads `oauth:revocations` after the last entry it read; the stream is
    trimmed by length. When the admin's revocation of a stolen token and a flood of other
    revocations land between two of its reads, the flood trims the admin's entry away before
    the replica reads it, and that replica accepted the stolen token until it expired. It now
    sees that what it read last was trimmed, and learns `oauth:revoked` again. Scaled down (the
    cap patched to 100, a flood of 300 in the same transaction as the admin's revocation)."""
    monkeypatch.setattr(oauth_sessions, "REVOCATIONS_MAX_LENGTH", 100)
    ready = await _guarded_mcp_test(nursery, storage, make_settings, github)
    admin = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=admin) as api:
        body = {"resource": "http://mcp.test", "scope": "mcp:read", "username": "victim"}
        earlier = (await api.post("/api/v1/oauth/test-tokens", json=body)).json()
        assert (await api.delete(f"/api/v1/oauth/sessions/{earlier['session_id']}")).is_success
        minted = (await api.post("/api/v1/oauth/test-tokens", json=body)).json()
    stolen = {"Host": "mcp.test", "Authorization": f"Bearer {minted['access_token']}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ready.http_port}") as public:

        async def served() -> bool:
            return (await public.get("/echo/x", headers=stolen)).status_code == 200

        await eventually(served, what="the token accepted before it is revoked")
        record = await storage.oauth.get_token(minted["jti"])
        assert record is not None
        async with storage.redis.pipeline(transaction=True) as pipe:
            oauth_sessions.queue_revocation(pipe, record)
            for number in range(300):
                flood = record.model_copy(update={"jti": f"flood-{number}"})
                oauth_sessions.queue_revocation(pipe, flood)
        left = await storage.oauth.revocations_since("0", count=100_000)
        assert minted["jti"] not in [entry.jti for entry in left]  # trimmed by the flood

        async def refused() -> bool:
            return (await public.get("/echo/x", headers=stolen)).status_code == 401

        await eventually(refused, what="the stolen token refused by the running replica")
