"""Rotating the OAuth signing key (OAUTH_JWT_PRIVATE_KEY_B64 set over the generated key): the
generated key's tokens run out, and the key is then trusted no more."""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Callable

import httpx
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, keys
from tests.backend import serve_backend
from tests.conftest import Mint
from tests.eventually import eventually

HOST = "mcp.example.com"


def configured_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return base64.b64encode(pem).decode()


@pytest.mark.parametrize(("retired_ago", "status"), [(None, 200), (3600.0, 401)])
async def test_the_generated_key_is_trusted_one_token_lifetime_after_a_rotation(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    mint: Mint,
    retired_ago: float | None,
    status: int,
) -> None:
    """Someone who has the generated key (a backup, a leaked Redis) could go on minting tokens
    with any identity after the operator rotated to a configured key: the old key stayed
    trusted for ever. It is trusted for OAUTH_ACCESS_TOKEN_LIFETIME after the rotation (so the
    tokens it signed run out), then never again."""
    await mint("https://warm.example")  # the generated key, made and kept in Redis
    if retired_ago is not None:  # the rotation was an hour ago (the lifetime is 30 minutes)
        await storage.redis.set(keys.OAUTH_SIGNING_KEY_RETIRED, repr(time.time() - retired_ago))
    rotated = make_settings(oauth_jwt_private_key_b64=configured_key())
    ready: Ready = await nursery.start(functools.partial(serve, rotated, handle_signals=False))
    backend: int = await nursery.start(functools.partial(serve_backend, "protected"))
    protected = {"auth_enabled": True, "auth_required_users": ["*"]}
    target = {"hostname": HOST, "target_url": f"http://127.0.0.1:{backend}", **protected}
    await storage.proxies.create(ProxyTarget.model_validate(target))
    origin = f"http://{HOST}:{ready.http_port}"
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{ready.http_port}",
        headers={"Host": f"{HOST}:{ready.http_port}"},
    ) as public:

        async def protecting() -> bool:
            return (await public.get("/echo")).status_code == 401

        await eventually(protecting, what=f"{HOST} protected")
        old_key_token = await mint(origin, username="mallory", sub="github-666")
        answer = await public.get("/echo", headers={"Authorization": f"Bearer {old_key_token}"})
    assert answer.status_code == status, answer.text
