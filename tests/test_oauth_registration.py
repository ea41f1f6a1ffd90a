"""Dynamic Client Registration (RFC 7591) and client management (RFC 7592) over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.oauth_helpers import REDIRECT_URI, FlowClient

github = oauth_helpers.github
oauth_gateway = oauth_helpers.oauth_gateway
flow = oauth_helpers.flow


def bearer(registered: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {registered['registration_access_token']}"}


async def test_registration_answers_the_client_information(
    flow: FlowClient, oauth_gateway: Ready, storage: Storage
) -> None:
    response = await flow.http.post(
        "/register",
        json={
            "client_name": "Example MCP Client",
            "software_id": "mcp-client-example",
            "software_version": "1.0.0",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": "mcp:read mcp:write",
            "unknown_member": "ignored",
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["client_id"].startswith("mcp_")
    assert body["client_secret"] and body["registration_access_token"]
    assert (
        body["registration_client_uri"] == f"{oauth_gateway.api_url}/register/{body['client_id']}"
    )
    assert body["client_secret_expires_at"] > body["client_id_issued_at"] > 0
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["software_id"] == "mcp-client-example"
    assert "unknown_member" not in body

    stored = await storage.oauth.get_client(body["client_id"])
    assert stored is not None
    assert stored.client_secret_hash != body["client_secret"]
    assert body["client_secret"] not in stored.model_dump_json()
    assert body["registration_access_token"] not in stored.model_dump_json()


async def test_basic_authentication_at_the_token_endpoint(flow: FlowClient) -> None:
    client = await flow.register()
    authorized = await flow.authorize(client["client_id"])
    response = await flow.http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": authorized.code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": authorized.verifier,
        },
        auth=(client["client_id"], client["client_secret"]),
    )
    assert response.status_code == 200, response.text


async def test_wrong_basic_credentials_get_a_basic_challenge(flow: FlowClient) -> None:
    client = await flow.register()
    response = await flow.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        auth=(client["client_id"], "wrong"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"redirect_uris": [REDIRECT_URI], "grant_types": ["client_credentials"]},
            "invalid_client_metadata",
        ),
        (
            {"redirect_uris": [REDIRECT_URI], "grant_types": ["refresh_token"]},
            "invalid_client_metadata",
        ),
        ({"redirect_uris": [REDIRECT_URI], "response_types": ["token"]}, "invalid_client_metadata"),
        (
            {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "private_key_jwt"},
            "invalid_client_metadata",
        ),
        (
            {"redirect_uris": [REDIRECT_URI], "scope": "openid everything"},
            "invalid_client_metadata",
        ),
        ({"redirect_uris": "not-a-list"}, "invalid_client_metadata"),
        ({"client_name": "no redirect uris"}, "invalid_redirect_uri"),
        (  # anyone's registration kept 62 KB for 90 days: the whole is bounded (8 KiB)
            {
                "redirect_uris": [REDIRECT_URI],
                "contacts": [f"{n}{'x' * 1980}@example.com" for n in range(10)],
            },
            "invalid_client_metadata",
        ),
    ],
)
async def test_invalid_metadata_is_refused(
    flow: FlowClient, body: dict[str, Any], error: str
) -> None:
    response = await flow.http.post("/register", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error


async def test_a_body_that_is_not_json_is_refused(flow: FlowClient) -> None:
    response = await flow.http.post("/register", content=b"redirect_uris=x")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"


async def test_read_update_delete_with_the_registration_access_token(
    flow: FlowClient, storage: Storage
) -> None:
    client = await flow.register()
    uri = client["registration_client_uri"]

    read = await flow.http.get(uri, headers=bearer(client))
    assert read.status_code == 200, read.text
    assert read.json()["client_name"] == "Test Client"
    assert "client_secret" not in read.json()

    changed = {key: client[key] for key in ("client_id", "redirect_uris", "grant_types")}
    changed["client_name"] = "Renamed"
    updated = await flow.http.put(uri, headers=bearer(client), json=changed)
    assert updated.status_code == 200, updated.text
    assert updated.json()["client_name"] == "Renamed"

    issued = await flow.tokens(client)
    assert issued["access_token"]
    deleted = await flow.http.delete(uri, headers=bearer(client))
    assert deleted.status_code == 204
    assert await storage.oauth.get_client(client["client_id"]) is None
    assert all(token.revoked for token in await storage.oauth.tokens_of_user("alice"))
    gone = await flow.http.get(uri, headers=bearer(client))
    assert gone.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}],
)
async def test_management_needs_the_right_token(flow: FlowClient, headers: dict[str, str]) -> None:
    client = await flow.register()
    for method in ("GET", "DELETE"):
        response = await flow.http.request(
            method, client["registration_client_uri"], headers=headers
        )
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"


async def test_one_clients_token_does_not_manage_another(flow: FlowClient) -> None:
    mine = await flow.register()
    theirs = await flow.register()
    response = await flow.http.get(theirs["registration_client_uri"], headers=bearer(mine))
    assert response.status_code == 401


@pytest.mark.parametrize(
    "change",
    [
        {"client_id": "mcp_other"},
        {"registration_access_token": "x"},
        {"client_secret": "not-the-secret"},
        {"token_endpoint_auth_method": "none"},
        {"redirect_uris": ["http://example.com/cb"]},
    ],
)
async def test_updates_that_are_refused(flow: FlowClient, change: dict[str, Any]) -> None:
    client = await flow.register()
    body = {"client_id": client["client_id"], "redirect_uris": [REDIRECT_URI], **change}
    response = await flow.http.put(
        client["registration_client_uri"], headers=bearer(client), json=body
    )
    assert response.status_code == 400, response.text


async def test_a_registered_client_lives_an_hour_until_its_first_token(
    flow: FlowClient, storage: Storage
) -> None:
    """Open registration is rate-limited, but every client lived OAUTH_CLIENT_LIFETIME (90
    days, ~10 KiB each) whether used or not: one address kept registering, ~250 MiB a day. A
    client lives OAUTH_UNUSED_CLIENT_LIFETIME (an hour) until its first token, then its whole
    lifetime; an update of its registration does not lengthen the first."""
    unused = await flow.register()
    key = f"oauth:client:{unused['client_id']}"
    assert 0 < await storage.redis.ttl(key) <= 3600
    renamed = await flow.http.put(
        f"/register/{unused['client_id']}",
        json={
            "client_id": unused["client_id"],
            "client_name": "Renamed",
            "redirect_uris": [REDIRECT_URI],
        },
        headers=bearer(unused),
    )
    assert renamed.status_code == 200, renamed.text
    assert 0 < await storage.redis.ttl(key) <= 3600

    used = await flow.register()
    await flow.tokens(used)
    assert await storage.redis.ttl(f"oauth:client:{used['client_id']}") > 89 * 86400
