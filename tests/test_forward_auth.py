"""`/verify`: ForwardAuth for external proxies, over real HTTP with real signed tokens."""

from __future__ import annotations

import httpx

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.storage import Storage
from tests.conftest import Mint

ORIGIN = "https://app.example.com"


async def test_valid_token_gets_identity_headers(anonymous: httpx.AsyncClient, mint: Mint) -> None:
    token = await mint(ORIGIN)
    response = await anonymous.get(
        "/verify",
        headers={"Authorization": f"Bearer {token}", "X-Forwarded-Host": "app.example.com"},
    )
    assert response.status_code == 200
    assert response.headers["x-auth-user-name"] == "alice"
    assert response.headers["x-auth-user-id"] == "github-42"


async def test_missing_wrong_audience_and_garbage_tokens_are_401(
    anonymous: httpx.AsyncClient, mint: Mint
) -> None:
    other = await mint("https://other.example.com")
    cases = [
        {},
        {"Authorization": f"Bearer {other}"},
        {"Authorization": "Bearer not.a.token"},
    ]
    for extra in cases:
        response = await anonymous.post(
            "/verify", headers={"X-Forwarded-Host": "app.example.com", **extra}
        )
        assert response.status_code == 401, extra
        assert response.headers["www-authenticate"].startswith("Bearer ")


async def test_the_forwarded_hosts_proxy_policy_applies(
    anonymous: httpx.AsyncClient, mint: Mint, storage: Storage
) -> None:
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {
                "hostname": "app.example.com",
                "target_url": "http://127.0.0.1:1",
                "auth_enabled": True,
                "auth_required_users": ["bob"],
                "auth_header_prefix": "X-User-",
            }
        )
    )
    alice = await mint(ORIGIN)
    headers = {"Authorization": f"Bearer {alice}", "X-Forwarded-Host": "app.example.com"}
    assert (await anonymous.get("/verify", headers=headers)).status_code == 403
    bob = await mint(ORIGIN, username="bob")
    allowed = await anonymous.get("/verify", headers={**headers, "Authorization": f"Bearer {bob}"})
    assert allowed.status_code == 200
    assert allowed.headers["x-user-user-name"] == "bob"
