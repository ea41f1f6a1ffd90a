"""Events in the request log: an OAuth flow's steps findable by client id, admin-API writes with
the token that made them, and a proxy's lifecycle, visible to its owner."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from oauthproxy.logs.steps import Answered, Step, step_of
from oauthproxy.serve import Ready
from tests import oauth_helpers
from tests.eventually import eventually
from tests.oauth_helpers import FlowClient
from tests.test_metrics import scrape

github = oauth_helpers.github
oauth_gateway = oauth_helpers.oauth_gateway
flow = oauth_helpers.flow


async def events(gateway: Ready, endpoint: str, until: str, **params: Any) -> list[dict[str, Any]]:
    """The endpoint's entries once one of them is the event `until` (oldest first)."""
    headers = {"Authorization": f"Bearer {gateway.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as admin:

        async def arrived() -> list[dict[str, Any]] | None:
            response = await admin.get(f"/api/v1/logs/{endpoint}", params=params)
            found: list[dict[str, Any]] = response.json()["logs"]
            return list(reversed(found)) if any(e["event"] == until for e in found) else None

        return await eventually(arrived, what=f"the event {until} in {endpoint}")


async def test_an_oauth_flow_leaves_its_steps_by_client_id(
    flow: FlowClient, oauth_gateway: Ready
) -> None:
    client = await flow.register()
    first = await flow.tokens(client)
    refreshed = await flow.token(
        client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert refreshed.status_code == 200
    reused = await flow.token(client, grant_type="authorization_code", code="not-a-code")
    assert reused.status_code == 400
    client_id = client["client_id"]
    trail = await events(oauth_gateway, f"client/{client_id}", "oauth.token_refused")
    steps = [entry["event"] for entry in trail]
    assert steps == [
        "oauth.registration",
        "oauth.authorize_started",
        "oauth.token_issued",
        "oauth.token_refreshed",
        "oauth.token_refused",
    ]
    refused = trail[-1]
    assert (refused["gateway_reason"], refused["level"]) == ("invalid_request", "WARNING")
    consents = await events(
        oauth_gateway, "search", "oauth.consent_given", event="oauth.consent_given"
    )
    assert consents
    samples = await scrape(oauth_gateway)
    for outcome in ("issued", "refreshed", "refused"):
        key = ("oauthproxy_oauth_tokens_total", (("outcome", outcome),))
        assert samples[key] == 1, outcome
    stored = str(trail) + str(consents)
    for secret in (client["client_secret"], first["access_token"], first["refresh_token"]):
        assert secret not in stored


async def test_admin_writes_and_a_proxys_lifecycle(flow: FlowClient, oauth_gateway: Ready) -> None:
    headers = {"Authorization": f"Bearer {oauth_gateway.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=oauth_gateway.api_url, headers=headers) as admin:
        created = await admin.post(
            "/api/v1/proxy/targets/",
            json={"hostname": "life.example.com", "target_url": "http://127.0.0.1:9"},
        )
        assert created.status_code == 201, created.text
        writes = await events(oauth_gateway, "search", "admin.write", event="admin.write")
        assert writes[-1]["user"] == "admin"
        assert writes[-1]["gateway_reason"] == "POST /api/v1/proxy/targets/"
        await events(oauth_gateway, "search", "proxy.served", hostname="life.example.com")
        assert (await admin.delete("/api/v1/proxy/targets/life.example.com")).status_code == 200
        life = await events(oauth_gateway, "search", "proxy.stopped", hostname="life.example.com")
    assert [entry["event"] for entry in life] == ["proxy.served", "proxy.stopped"]


def test_steps_of_answers() -> None:
    table = [
        (Answered("POST", "/register", 201, client_id="c"), Step("oauth.registration", 201, "c")),
        (
            Answered("POST", "/register", 400, error="invalid_client_metadata"),
            Step("oauth.registration_refused", 400, "", "invalid_client_metadata"),
        ),
        (
            Answered("GET", "/authorize", 302, client_id="c", location="https://github.com/x"),
            Step("oauth.authorize_started", 302, "c"),
        ),
        (
            Answered("GET", "/authorize", 302, client_id="c", location="http://a/cb?error=x"),
            Step("oauth.authorize_refused", 400, "c", "x"),
        ),
        (Answered("POST", "/consent", 303, decision="approve"), Step("oauth.consent_given", 303)),
        (Answered("POST", "/consent", 303, decision="deny"), Step("oauth.consent_refused", 303)),
        (
            Answered("POST", "/token", 200, client_id="c", grant_type="refresh_token"),
            Step("oauth.token_refreshed", 200, "c"),
        ),
        (
            Answered("POST", "/token", 401, client_id="c", error="invalid_client"),
            Step("oauth.token_refused", 401, "c", "invalid_client"),
        ),
        (Answered("POST", "/revoke", 200, client_id="c"), Step("oauth.token_revoked", 200, "c")),
        (
            Answered("DELETE", "/api/v1/routes/r1", 200),
            Step("admin.write", 200, detail="DELETE /api/v1/routes/r1"),
        ),
        (Answered("GET", "/api/v1/routes/", 200), None),
        (Answered("GET", "/jwks", 200), None),
    ]
    for answered, step in table:
        assert step_of(answered) == step, answered


async def test_a_certificates_renewal_is_two_events(oauth_gateway: Ready) -> None:
    headers = {"Authorization": f"Bearer {oauth_gateway.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=oauth_gateway.api_url, headers=headers) as admin:
        created = await admin.post(
            "/api/v1/certificates/self-signed",
            json={"cert_name": "events-cert", "domains": ["cert.example.com"]},
        )
        assert created.status_code in (200, 201, 202), created.text
        renewed = await admin.post("/api/v1/certificates/events-cert/renew")
        assert renewed.status_code in (200, 202), renewed.text
    trail = await events(oauth_gateway, "search", "certificate.issued", hostname="cert.example.com")
    assert [(e["event"], e["request_path"]) for e in trail] == [
        ("certificate.ordered", "events-cert"),
        ("certificate.issued", "events-cert"),
    ]
    assert trail[0]["gateway_reason"] == "renewal"
    assert trail[-1]["gateway_reason"].startswith("issued, valid until")


async def test_a_clients_values_cannot_forge_lines_of_the_gateways_log(
    gateway: Ready, caplog: pytest.LogCaptureFixture
) -> None:
    """An event's values are a client's (a client id, a path), and they went into the text log
    as sent: a newline in `client_id` began a line that read like the gateway's own, and a space
    with `key=` a field of its own. Such a value is written quoted, its newline escaped."""
    caplog.set_level(logging.INFO, logger="oauthproxy.logs.logger")
    fake = "2026-12-05 04:00:00,000 WARNING oauthproxy.dashboard: forged"
    async with httpx.AsyncClient(base_url=gateway.api_url) as anonymous:
        await anonymous.get("/authorize", params={"client_id": f"x\n{fake}"})
        await anonymous.post(f"/api/v1/x%0A{fake.replace(' ', '%20')}", json={})

    async def logged() -> list[str] | None:
        found = [r.getMessage() for r in caplog.records if r.name == "oauthproxy.logs.logger"]
        events = [message for message in found if "forged" in message]
        return events if len(events) >= 2 else None

    for message in await eventually(logged, what="both events in the gateway's log"):
        assert "\n" not in message and "\r" not in message, repr(message)
        # the client id's newline escaped; the path's kept percent-encoded (df58e14)
        assert "\\n2026-12-05 04:00:00,000 WARNING" in message or "%0A2026-12-05" in message
