"""The protected-resource registry (`resource:{uri}`) on a real gateway: CRUD with URL-encoded
URIs, token validation with tokens from real authorization flows, auto-registration."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.storage import Storage
from tests.oauth_helpers import FlowClient
from tests.test_oauth_admin_api import assert_admin_only
from tests.test_oauth_admin_api import flow as flow  # the fixtures, shared
from tests.test_oauth_admin_api import gateway as gateway
from tests.test_oauth_admin_api import github as github
from tests.test_oauth_admin_api import oauth_gateway as oauth_gateway

RESOURCE = "https://mcp.example.com/mcp"
RESOURCES = "/api/v1/resources/"


def at(uri: str, *rest: str) -> str:
    return RESOURCES + "/".join([quote(uri, safe=""), *rest])


async def register(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await api.post(RESOURCES, json={"uri": RESOURCE, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_read_update_delete_with_encoded_uris(api: httpx.AsyncClient) -> None:
    created = await register(
        api, uri="HTTPS://MCP.Example.com/mcp", name="Tools", proxy_target="mcp.example.com"
    )
    assert created == {
        "uri": RESOURCE,
        "name": "Tools",
        "proxy_target": "mcp.example.com",
        "scopes": ["mcp:read", "mcp:write"],
        "metadata_url": "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
    }
    assert (await api.get(at(RESOURCE))).json() == created
    assert (await api.get(RESOURCES + RESOURCE)).json() == created  # unencoded works too
    assert (await api.get(RESOURCES)).json() == [created]

    updated = await api.put(at(RESOURCE), json={"name": "MCP tools", "scopes": ["mcp:admin"]})
    assert updated.status_code == 200, updated.text
    assert updated.json() == {**created, "name": "MCP tools", "scopes": ["mcp:admin"]}
    assert (await api.get(at(RESOURCE))).json() == updated.json()

    again = await api.post(RESOURCES, json={"uri": RESOURCE})
    assert (again.status_code, again.json()["field"]) == (409, "uri")

    deleted = await api.delete(at(RESOURCE))
    assert deleted.json() == updated.json()
    for method in ("GET", "PUT", "DELETE"):
        gone = await api.request(method, at(RESOURCE), json={} if method == "PUT" else None)
        assert gone.status_code == 404, method
        assert (gone.json()["error"], gone.json()["field"]) == ("not_found", "resource")
    assert (await api.get(RESOURCES)).json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"uri": "mcp.example.com"}, "uri"),
        ({"uri": "https://mcp.example.com#part"}, "uri"),
        ({"uri": RESOURCE, "scopes": ["everything"]}, "scopes.0"),
        ({"uri": RESOURCE, "proxy_target": "not a host"}, "proxy_target"),
        ({"uri": RESOURCE, "colour": "blue"}, "colour"),
    ],
)
async def test_bad_resources_are_refused(
    api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await api.post(RESOURCES, json=body)
    assert response.status_code == 422
    assert response.json()["field"] == field


async def validate(api: httpx.AsyncClient, uri: str, token: str) -> dict[str, Any]:
    response = await api.post(at(uri, "validate-token"), json={"token": token})
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()
    return verdict


async def test_validate_token_checks_audience_and_revocation(
    api: httpx.AsyncClient, flow: FlowClient
) -> None:
    await register(api)
    await register(api, uri="https://other.example.com")
    client = await flow.register()
    issued = await flow.tokens(client, resource=RESOURCE)
    token = issued["access_token"]

    accepted = await validate(api, RESOURCE, token)
    assert (accepted["valid"], accepted["resource"]) == (True, RESOURCE)
    assert accepted["claims"]["aud"] == [RESOURCE]
    assert (accepted["claims"]["username"], accepted["claims"]["client_id"]) == (
        "alice",
        client["client_id"],
    )

    elsewhere = await validate(api, "https://other.example.com", token)
    assert elsewhere["valid"] is False
    assert "audience" in elsewhere["reason"]
    assert (await validate(api, RESOURCE, "not.a.token"))["reason"] == "malformed"

    revoked = await flow.http.post(
        "/revoke",
        data={
            "token": token,
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    assert revoked.status_code == 200
    assert await validate(api, RESOURCE, token) == {
        "valid": False,
        "resource": RESOURCE,
        "reason": "revoked",
    }


async def test_validate_token_for_an_unknown_resource_is_a_404(api: httpx.AsyncClient) -> None:
    response = await api.post(
        at("https://nowhere.example.com", "validate-token"), json={"token": "x"}
    )
    assert response.status_code == 404
    assert response.json()["field"] == "resource"


async def test_auto_register_covers_protected_and_described_proxies(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    proxies: list[dict[str, Any]] = [
        {"hostname": "secure.example.com", "auth_enabled": True},
        {"hostname": "plain.example.com", "enable_https": False, "resource_scopes": ["mcp:read"],
         "resource_endpoint": "/mcp"},
        {"hostname": "static.example.com"},
    ]  # fmt: skip
    for proxy in proxies:
        target = {"target_url": "http://127.0.0.1:9", **proxy}
        await storage.proxies.create(ProxyTarget.model_validate(target))

    first = await api.post(f"{RESOURCES}auto-register")
    assert first.status_code == 200, first.text
    assert first.json()["existing"] == []
    assert first.json()["created"] == [
        {
            "uri": "http://plain.example.com",
            "name": "plain.example.com",
            "proxy_target": "plain.example.com",
            "scopes": ["mcp:read"],
            "metadata_url": "http://plain.example.com/.well-known/oauth-protected-resource",
        },
        {
            "uri": "https://secure.example.com",
            "name": "secure.example.com",
            "proxy_target": "secure.example.com",
            "scopes": ["mcp:read", "mcp:write"],
            "metadata_url": "https://secure.example.com/.well-known/oauth-protected-resource",
        },
    ]
    assert (await api.get(RESOURCES)).json() == first.json()["created"]
    second = (await api.post(f"{RESOURCES}auto-register")).json()
    assert second == {
        "created": [],
        "existing": ["http://plain.example.com", "https://secure.example.com"],
    }


ENDPOINTS = [
    ("GET", RESOURCES),
    ("POST", RESOURCES),
    ("POST", f"{RESOURCES}auto-register"),
    ("GET", at(RESOURCE)),
    ("PUT", at(RESOURCE)),
    ("DELETE", at(RESOURCE)),
    ("POST", at(RESOURCE, "validate-token")),
]


async def test_every_endpoint_needs_the_admin_token(api: httpx.AsyncClient) -> None:
    await assert_admin_only(api, ENDPOINTS)
