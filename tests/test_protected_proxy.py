"""OAuth on the proxy side: a protected proxy checks bearer tokens on every request."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.util import urlsafe_b64decode

from oauthproxy.models.oauth import AccessTokenRecord
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.oauth.jws import sign
from oauthproxy.oauth.signing import load_keys
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from oauthproxy.storage.oauth_sessions import queue_revocation
from tests.backend import serve_backend
from tests.conftest import Mint
from tests.eventually import eventually
from tests.jwt_text import b64url, segment, unverified_claims

HOST = "mcp.example.com"
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


@pytest.fixture
async def origin(nursery: trio.Nursery, storage: Storage, gateway: Ready) -> str:
    backend: int = await nursery.start(functools.partial(serve_backend, "protected"))
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {
                "hostname": HOST,
                "target_url": f"http://127.0.0.1:{backend}",
                "auth_enabled": True,
                "auth_required_users": ["*"],
                "auth_excluded_paths": ["/echo/public"],
            }
        )
    )
    return f"http://{HOST}:{gateway.http_port}"


@pytest.fixture
async def public(gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{gateway.http_port}"
    host = {"Host": f"{HOST}:{gateway.http_port}"}  # as a browser or an MCP client sends it
    async with httpx.AsyncClient(
        base_url=base, headers=host, limits=NO_KEEPALIVE, timeout=10
    ) as client:
        yield client


async def until_served(public: httpx.AsyncClient) -> httpx.Response:
    async def known() -> httpx.Response | None:
        response = await public.get("/echo")
        return response if response.status_code != 404 else None

    return await eventually(known, what="/echo known")


async def test_no_token_is_a_401_pointing_at_the_metadata(
    public: httpx.AsyncClient, origin: str
) -> None:
    response = await until_served(public)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{origin}/.well-known/oauth-protected-resource"' in challenge
    assert 'as_uri="https://auth.localhost/.well-known/oauth-authorization-server"' in challenge
    assert response.json()["error"] == "unauthorized"


async def test_protected_resource_metadata(public: httpx.AsyncClient, origin: str) -> None:
    await until_served(public)
    for path in (
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ):
        document = (await public.get(path)).json()
        assert document["resource"] == origin
        assert document["authorization_servers"] == ["https://auth.localhost"]
        assert document["bearer_methods_supported"] == ["header"]


async def test_a_valid_token_passes_with_identity_and_forged_identity_is_dropped(
    public: httpx.AsyncClient, origin: str, mint: Mint
) -> None:
    await until_served(public)
    token = await mint(origin)
    headers = {"Authorization": f"Bearer {token}", "X-Auth-User-Name": "mallory"}
    response = await public.get("/echo", headers=headers)
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert seen["x-auth-user-name"] == "alice"
    assert seen["x-auth-user-id"] == "github-42"
    assert seen["x-auth-email"] == "alice@example.com"
    assert seen["x-auth-scopes"] == "mcp:read mcp:write"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": ["https://other.example.com"]}, "not meant for this resource"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"iss": "https://evil.example.com"}, "wrong issuer"),
    ],
)
async def test_bad_tokens_are_refused(
    public: httpx.AsyncClient,
    origin: str,
    mint: Mint,
    overrides: dict[str, Any],
    reason: str,
) -> None:
    await until_served(public)
    token = await mint(origin, **overrides)
    response = await public.get("/echo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert reason in response.json()["detail"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_hs256_signed_with_the_public_key_is_refused(
    public: httpx.AsyncClient, origin: str, storage: Storage, make_settings: Callable[..., Settings]
) -> None:
    await until_served(public)
    keys = await load_keys(storage, make_settings())
    public_pem = keys.signing.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = segment({"alg": "HS256", "typ": "JWT", "kid": keys.signing.kid})
    now = int(time.time())
    body = {"iss": "https://auth.localhost", "sub": "x", "aud": [origin], "azp": "c",
            "jti": "j", "iat": now, "exp": now + 600, "scope": "mcp:read"}  # fmt: skip
    payload = segment(body)
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{b64url(mac)}"
    response = await public.get("/echo", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert "unsupported algorithm" in response.json()["detail"]


def unsigned(token: str) -> str:
    """`alg: none` over the same claims, no signature."""
    header = segment({"alg": "none", "typ": "JWT"})
    return f"{header}.{token.split('.')[1]}."


def tampered(token: str) -> str:
    """The real signature over a payload that now names someone else."""
    header, _payload, signature = token.split(".")
    claims = {**unverified_claims(token), "sub": "github-1", "username": "admin"}
    return f"{header}.{segment(claims)}.{signature}"


def resigned_by_another_key(token: str) -> str:
    """The same claims signed by a key the gateway never published, under the gateway's kid."""
    header = json.loads(urlsafe_b64decode(token.split(".")[0].encode()))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return sign(unverified_claims(token), stranger, header["kid"])


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (unsigned, "unsupported algorithm"),
        (tampered, "bad signature"),
        (resigned_by_another_key, "bad signature"),
    ],
)
async def test_forged_tokens_are_refused(
    public: httpx.AsyncClient,
    origin: str,
    mint: Mint,
    forge: Callable[[str], str],
    reason: str,
) -> None:
    await until_served(public)
    genuine = await mint(origin)
    forged = forge(genuine)
    response = await public.get("/echo", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert reason in response.json()["detail"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    passes = await public.get("/echo", headers={"Authorization": f"Bearer {genuine}"})
    assert passes.status_code == 200


async def test_token_in_the_query_string_is_not_accepted(
    public: httpx.AsyncClient, origin: str, mint: Mint
) -> None:
    await until_served(public)
    token = await mint(origin)
    response = await public.get(f"/echo?access_token={token}")
    assert response.status_code == 401


async def test_excluded_paths_need_no_token(public: httpx.AsyncClient, origin: str) -> None:
    await until_served(public)
    response = await public.get("/echo/public/x")
    assert response.status_code == 200
    assert "x-auth-user-id" not in response.json()["headers"]


async def test_a_revoked_token_is_refused_within_a_second(
    public: httpx.AsyncClient, origin: str, mint: Mint, storage: Storage
) -> None:
    await until_served(public)
    jti = uuid.uuid4().hex
    token = await mint(origin, jti=jti)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await public.get("/echo", headers=headers)).status_code == 200
    now = datetime.now(UTC)
    record = AccessTokenRecord(
        jti=jti,
        session_id="s",
        client_id="client-1",
        subject="github-42",
        username="alice",
        scope="mcp:read",
        audience=[origin],
        issued_at=now,
        expires_at=now + timedelta(days=1),
    )
    async with storage.redis.pipeline(transaction=True) as pipe:
        queue_revocation(pipe, record)

    async def no_longer_served() -> bool:
        return (await public.get("/echo", headers=headers)).status_code != 200

    await eventually(no_longer_served, what="the revocation followed", within=1)
    refused = await public.get("/echo", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "revoked"


async def test_allowlists_and_scopes_are_enforced(
    public: httpx.AsyncClient, origin: str, mint: Mint, storage: Storage
) -> None:
    await until_served(public)
    target = await storage.proxies.get(HOST)
    assert target is not None
    narrowed = {"auth_required_users": ["bob"], "auth_allowed_scopes": ["mcp:admin"]}
    await storage.proxies.update(ProxyTarget.model_validate({**target.model_dump(), **narrowed}))
    token = await mint(origin)
    headers = {"Authorization": f"Bearer {token}"}

    async def refused() -> httpx.Response | None:
        response = await public.get("/echo", headers=headers)
        return response if response.status_code != 200 else None

    response = await eventually(refused, what="the narrowed rules followed")
    assert response.status_code == 403
    bob = await mint(origin, username="bob")
    scoped = await public.get("/echo", headers={"Authorization": f"Bearer {bob}"})
    assert scoped.status_code == 403
    assert 'error="insufficient_scope"' in scoped.headers["www-authenticate"]
    assert 'scope="mcp:admin"' in scoped.headers["www-authenticate"]


@pytest.mark.parametrize(
    "path", ["/echo", "/.well-known/oauth-protected-resource"], ids=["401", "metadata"]
)
async def test_a_client_closing_after_an_answer_from_the_gateway_harms_nothing(
    public: httpx.AsyncClient, origin: str, gateway: Ready, path: str
) -> None:
    """Regression: `Connection: close` on a request the gateway answers itself (401, metadata)
    raised in the connection task and took the whole gateway down."""
    await until_served(public)
    for _ in range(3):
        stream = await trio.open_tcp_stream("127.0.0.1", gateway.http_port)
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                answer += chunk
        await stream.aclose()
        assert answer.startswith(b"HTTP/1.1 401 " if path == "/echo" else b"HTTP/1.1 200 ")
    assert (await public.get("/echo")).status_code == 401  # the gateway still serves


async def test_metadata_names_the_scopes_the_proxy_requires(
    public: httpx.AsyncClient, origin: str, storage: Storage
) -> None:
    await until_served(public)
    target = await storage.proxies.get(HOST)
    assert target is not None
    required = {"auth_allowed_scopes": ["mcp:admin"]}
    await storage.proxies.update(ProxyTarget.model_validate({**target.model_dump(), **required}))

    async def updated() -> dict[str, Any] | None:
        document: dict[str, Any] = (
            await public.get("/.well-known/oauth-protected-resource")
        ).json()
        return document if "mcp:admin" in document["scopes_supported"] else None

    document = await eventually(updated, what="the metadata naming mcp:admin")
    assert document["scopes_supported"] == ["mcp:admin", "mcp:read", "mcp:write"]


async def test_custom_metadata_cannot_name_another_resource_or_server(
    public: httpx.AsyncClient, origin: str, storage: Storage, api: httpx.AsyncClient
) -> None:
    """`resource_custom_metadata` was applied last, so an owner's proxy could claim another
    owner's origin as its `resource` and name an authorization server and keys of its own
    choosing. It adds fields; those three stay the gateway's (a stored one is ignored)."""
    for key in ("resource", "authorization_servers", "jwks_uri"):
        body = {"resource_custom_metadata": {key: "https://victim.example.com"}}
        refused = await api.post(f"/api/v1/proxy/targets/{HOST}/mcp", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "resource_custom_metadata", refused.text
    await until_served(public)
    target = await storage.proxies.get(HOST)
    assert target is not None
    claimed = {"resource": "https://victim.example.com", "jwks_uri": "https://evil.example/k"}
    custom = {"resource_custom_metadata": {**claimed, "x-team": "mcp"}}
    await storage.proxies.update(ProxyTarget.model_validate({**target.model_dump(), **custom}))

    async def updated() -> dict[str, Any] | None:
        document: dict[str, Any] = (
            await public.get("/.well-known/oauth-protected-resource")
        ).json()
        return document if "x-team" in document else None

    document = await eventually(updated, what="the custom field in the metadata")
    assert document["resource"] == origin
    assert document["jwks_uri"] == "https://auth.localhost/jwks"
