"""`proxy-client oauth …` and `proxy-client resource …` as subprocesses against a real gateway
wired to the GitHub stand-in, with sessions from real authorization flows."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.oauth.signing import configured_key
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.oauth_helpers import REDIRECT_URI, FlowClient
from tests.test_cli_tokens import Cli
from tests.test_cli_tokens import cli as cli  # the fixture, shared
from tests.test_oauth_admin_api import claims_of, once_served
from tests.test_oauth_admin_api import flow as flow  # the fixtures, shared
from tests.test_oauth_admin_api import gateway as gateway
from tests.test_oauth_admin_api import github as github
from tests.test_oauth_admin_api import oauth_gateway as oauth_gateway

RESOURCE = "https://mcp.example.com/mcp"


def jti_of(token: str) -> str:
    return str(claims_of(token)["jti"])


async def test_register_then_follow_a_login_to_its_revocation(cli: Cli, flow: FlowClient) -> None:
    client = await cli.json(
        "oauth", "register", "CLI tool", "--redirect-uri", REDIRECT_URI, "--scope", "mcp:read"
    )
    assert (client["origin"], client["scope"]) == ("admin", "mcp:read")
    assert client["client_secret"]
    token = (await flow.tokens(client, resource=RESOURCE))["access_token"]

    [listed] = await cli.json("oauth", "clients", "--active-only")
    assert (listed["client_id"], listed["sessions"]["active"]) == (client["client_id"], 1)
    table = await cli.ok("oauth", "clients", "--active-only")
    assert "CLI tool" in table
    assert table.rstrip().endswith("Summary: 1 client | 1 with active sessions")
    shown_client = await cli.json("oauth", "client", client["client_id"])
    assert "client_secret" not in shown_client
    assert shown_client["client_name"] == "CLI tool"

    [session] = await cli.json("oauth", "sessions")
    assert (session["username"], session["resources"]) == ("alice", [RESOURCE])
    sessions_table = await cli.ok("oauth", "sessions")
    assert "alice" in sessions_table and "Summary: 1 session | 1 active" in sessions_table
    shown = await cli.json("oauth", "session", session["session_id"])
    assert [t["jti"] for t in shown["access_tokens"]] == [jti_of(token)]
    record = await cli.json("oauth", "token", jti_of(token))
    assert (record["status"], record["audience"]) == ("active", [RESOURCE])

    revoked = await cli.json("oauth", "revoke-session", session["session_id"])
    assert revoked["revoked_tokens"] == [jti_of(token)]
    assert await cli.json("oauth", "sessions") == []
    assert "No active sessions" in await cli.ok("oauth", "sessions")
    [kept] = await cli.json("oauth", "sessions", "--all")
    assert kept["status"] == "revoked"
    assert (await cli.json("oauth", "tokens"))["revoked"] == 1
    missing = await cli.fails("oauth", "session", session["session_id"] + "0")
    assert missing.startswith("error: session ")


async def test_metrics_status_and_health(cli: Cli, flow: FlowClient) -> None:
    client = await flow.register(client_name="Metered")
    await flow.tokens(client, resource=RESOURCE)
    metrics = await cli.json("oauth", "metrics")
    assert metrics["tokens"] == {"issued": 1, "active": 1, "revoked": 0, "expired": 0}
    [per_user] = metrics["per_user"]
    assert per_user["username"] == "alice"
    table = await cli.ok("oauth", "metrics")
    assert client["client_id"] in table and "Sessions.Active" in table

    assert (await cli.json("oauth", "status"))["sessions"]["active"] == 1
    health = await cli.json("oauth", "health")
    assert (health["status"], health["jwks"]["reachable"]) == ("healthy", True)
    assert "signing_key.kid" in await cli.ok("oauth", "health")


async def test_routes_setup_makes_every_proxy_answer_the_oauth_paths(
    cli: Cli, storage: Storage, oauth_gateway: Ready
) -> None:
    await cli.ok("route", "create", "/jwks", "url", "http://127.0.0.1:9", "--priority", "95")
    rows = await cli.json("oauth", "routes-setup", "example.com")
    assert len(rows) == 11
    assert {row["path"]: row["action"] for row in rows}["/jwks"] == "existing"
    assert sum(row["action"] == "created" for row in rows) == 10
    again = await cli.json("oauth", "routes-setup", "example.com")
    assert {row["action"] for row in again} == {"existing"}

    routes = [r for r in await cli.json("route", "list") if r["route_id"].startswith("oauth-")]
    assert len(routes) == 10
    assert {(r["target_type"], r["target_value"], r["priority"]) for r in routes} == {
        ("service", "api", 95)
    }
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {"hostname": "auth.example.com", "target_url": "http://127.0.0.1:9"}
        )
    )
    host = {"Host": f"auth.example.com:{oauth_gateway.http_port}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{oauth_gateway.http_port}") as public:
        answer = await once_served(public, "/.well-known/oauth-authorization-server", host)
        assert answer.json()["issuer"] == oauth_gateway.api_url
        assert (await public.get("/tokens-of-the-backend", headers=host)).status_code == 502


async def test_key_generate_prints_a_key_the_gateway_loads(
    cli: Cli, make_settings: Callable[..., Settings]
) -> None:
    printed = await cli.ok("oauth", "key-generate")
    [line] = [line for line in printed.splitlines() if not line.startswith("#")]
    name, _, value = line.partition("=")
    assert name == "OAUTH_JWT_PRIVATE_KEY_B64"
    key = serialization.load_pem_private_key(base64.b64decode(value), password=None)
    assert isinstance(key, RSAPrivateKey) and key.key_size == 2048
    loaded = configured_key(make_settings(oauth_jwt_private_key_b64=value))
    assert loaded is not None
    as_json = await cli.json("oauth", "key-generate")
    assert (as_json["name"], as_json["bits"]) == ("OAUTH_JWT_PRIVATE_KEY_B64", 2048)
    assert as_json["value"] != value


async def test_resources_and_test_tokens(cli: Cli) -> None:
    created = await cli.json(
        "resource", "create", RESOURCE, "--name", "Tools", "--proxy", "mcp.example.com",
        "--scopes", "mcp:read",
    )  # fmt: skip
    assert (created["uri"], created["scopes"]) == (RESOURCE, ["mcp:read"])
    assert await cli.json("resource", "show", RESOURCE) == created
    table = await cli.ok("resource", "list")
    assert "Tools" in table and "Summary: 1 resource" in table
    updated = await cli.json("resource", "update", RESOURCE, "--name", "MCP tools")
    assert updated["name"] == "MCP tools"

    table = await cli.ok("oauth", "test-tokens", RESOURCE, "--username", "bob")
    assert table.splitlines()[-1].startswith("Authorization: Bearer ey")
    minted = await cli.json("oauth", "test-tokens", RESOURCE, "--scope", "mcp:read")
    assert (minted["scope"], minted["resource"], minted["username"]) == (
        "mcp:read",
        RESOURCE,
        "admin",
    )
    verdict = await cli.json("resource", "validate-token", RESOURCE, minted["access_token"])
    assert (verdict["valid"], verdict["claims"]["jti"]) == (True, minted["jti"])
    await cli.ok("oauth", "revoke-session", minted["session_id"])
    refused = await cli.run(
        "--format", "json", "resource", "validate-token", RESOURCE, minted["access_token"]
    )
    assert refused.status == 1
    assert json.loads(refused.stdout)["reason"] == "revoked"

    assert (await cli.json("resource", "delete", RESOURCE))["name"] == "MCP tools"
    assert "No protected resources registered" in await cli.ok("resource", "list")
    assert await cli.json("resource", "auto-register") == {"created": [], "existing": []}
