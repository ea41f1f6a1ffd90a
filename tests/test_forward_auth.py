"""`/verify`: ForwardAuth for external proxies, over real HTTP with real signed tokens."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import trio

from oauthproxy.api.forward_auth import NoForwardedHost, forwarded_origin
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.conftest import Mint

ORIGIN = "https://app.example.com"


@pytest.fixture
async def gateway(
    nursery: trio.Nursery, make_settings: Callable[..., Settings], storage: Storage
) -> Ready:
    """A running gateway under which alice (`mint`'s user) may log in (the global allowlist,
    the policy of a host no proxy serves)."""
    settings = make_settings(oauth_allowed_github_users="alice")
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    return ready


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


async def test_two_authorization_lines_are_a_400(anonymous: httpx.AsyncClient, mint: Mint) -> None:
    """The external proxy passes both lines on: its backend could act on the one not checked
    (the gateway's own data plane answers the same 400)."""
    good = await mint(ORIGIN)
    headers = [
        ("X-Forwarded-Host", "app.example.com"),
        ("Authorization", f"Bearer {good}"),
        ("Authorization", "Bearer forged-for-the-backend"),
    ]
    response = await anonymous.get("/verify", headers=headers)
    assert response.status_code == 400, response.text
    assert "Authorization" in response.json()["detail"]


@pytest.mark.parametrize(
    ("proto", "cookie", "status"),
    [
        ("https", "__Host-unified_auth_token", 200),
        ("https", "unified_auth_token", 401),  # a sibling host may have planted it
        ("http", "unified_auth_token", 200),
    ],
)
async def test_the_cookie_is_read_under_the_name_it_is_set_under(
    anonymous: httpx.AsyncClient, mint: Mint, proto: str, cookie: str, status: int
) -> None:
    """Over HTTPS the auth cookie is `__Host-` only (docs/security.md): /verify read the plain
    name too, so a cookie tossed from a sibling host signed the victim in as its author."""
    token = await mint(f"{proto}://app.example.com")
    headers = {
        "X-Forwarded-Host": "app.example.com",
        "X-Forwarded-Proto": proto,
        "Cookie": f"{cookie}={token}",
    }
    assert (await anonymous.get("/verify", headers=headers)).status_code == status


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


async def test_a_host_no_proxy_serves_is_under_the_global_allowlist(
    anonymous: httpx.AsyncClient, mint: Mint
) -> None:
    """A login for a resource no proxy serves is under OAUTH_ALLOWED_GITHUB_USERS; `/verify`
    let any user the issuer vouches for through such a host (an admin's test token for anyone,
    or a token from when the allowlist was wider). Both now say the same."""
    headers = {"X-Forwarded-Host": "app.example.com"}
    mallory = await mint(ORIGIN, username="mallory", sub="github-666")
    refused = await anonymous.get(
        "/verify", headers={**headers, "Authorization": f"Bearer {mallory}"}
    )
    assert refused.status_code == 403, refused.text
    assert "x-auth-user-name" not in refused.headers
    alice = await mint(ORIGIN)
    allowed = await anonymous.get(
        "/verify", headers={**headers, "Authorization": f"Bearer {alice}"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["x-auth-user-name"] == "alice"


@pytest.mark.parametrize(
    ("hosts", "protos", "expected"),
    [
        (["app.example.com"], [], ("app.example.com", "https://app.example.com")),
        (["App.Example.COM"], ["http"], ("app.example.com", "http://app.example.com")),
        (
            ["app.example.com:8443"],
            ["HTTPS"],
            ("app.example.com:8443", "https://app.example.com:8443"),
        ),
        (["[::1]:8080"], [], ("[::1]:8080", "https://[::1]:8080")),
        ([" app.example.com "], [" https "], ("app.example.com", "https://app.example.com")),
    ],
)
def test_the_forwarded_origin(
    hosts: list[str], protos: list[str], expected: tuple[str, str]
) -> None:
    assert forwarded_origin(hosts, protos) == expected


@pytest.mark.parametrize(
    ("hosts", "protos", "reason"),
    [
        ([], [], "required"),
        ([""], [], "required"),
        (["a.example.com, b.example.com"], [], "exactly one"),
        (["a.example.com", "b.example.com"], [], "exactly one"),
        (["app.example.com/evil"], [], "not a host"),
        (["user@app.example.com"], [], "not a host"),
        (["app.example.com:port"], [], "not a host"),
        (["app.example.com"], ["ftp"], "X-Forwarded-Proto"),
        (["app.example.com"], ["http, https"], "X-Forwarded-Proto"),
    ],
)
def test_no_single_well_formed_forwarded_host_is_refused(
    hosts: list[str], protos: list[str], reason: str
) -> None:
    with pytest.raises(NoForwardedHost, match=reason):
        forwarded_origin(hosts, protos)


async def test_without_a_forwarded_host_no_token_passes(
    anonymous: httpx.AsyncClient, mint: Mint
) -> None:
    """The audience cannot be checked without the host: a token for another site, or for this
    one, is refused rather than waved through."""
    for audience in (ORIGIN, "https://other.example.com"):
        token = await mint(audience)
        for extra in ({}, {"X-Forwarded-Host": ""}, {"X-Forwarded-Host": "a.example.com, b"}):
            response = await anonymous.get(
                "/verify", headers={"Authorization": f"Bearer {token}", **extra}
            )
            assert response.status_code == 400, (audience, extra, response.text)
            assert response.json()["error"] == "invalid_request"
            assert "X-Forwarded-Host" in response.json()["detail"]
            assert "x-auth-user-name" not in response.headers
