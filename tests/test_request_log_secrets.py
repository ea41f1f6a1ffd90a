"""No secret reaches the request log: after an OAuth flow and authenticated traffic through the
public port, no token, code, client secret, cookie or GitHub token is anywhere in Redis's log
keys or in the access log lines on stdout."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from oauthproxy.storage.base import Redis
from tests import oauth_helpers
from tests.backend import serve_backend
from tests.eventually import eventually
from tests.github_standin import GitHubStandIn
from tests.oauth_helpers import FlowClient, start_gateway

github = oauth_helpers.github

LOG_PREFIXES = ("req:", "idx:req:", "stream:requests", "stats:")


async def log_parts(storage: Storage) -> list[str]:
    """Every key of the request log (in its own database, and any in the configuration's) and
    everything stored under it."""
    parts: list[str] = []
    for redis in (storage.log_redis, storage.redis):
        parts.extend(await _contents(redis))
    return parts


async def log_contents(storage: Storage) -> str:
    """`log_parts` as one text (there must be some)."""
    parts = await log_parts(storage)
    assert parts, "the request log wrote nothing: there is nothing to search"
    return "\n".join(parts)


async def _contents(redis: Redis) -> list[str]:
    parts: list[str] = []
    async for key in redis.scan_iter(match="*"):
        if not key.startswith(LOG_PREFIXES):
            continue
        parts.append(key)
        kind = await redis.type(key)
        if kind == "hash":
            parts.append(json.dumps(await redis.hgetall(key)))
        elif kind == "zset":
            parts.extend(str(member) for member in await redis.zrange(key, 0, -1))
        elif kind == "list":
            parts.extend(await redis.lrange(key, 0, -1))
        elif kind == "stream":
            for item in await redis.xrange(key):
                parts.append(json.dumps(dict(item.field_values)))
        elif kind == "string":
            parts.append(str(await redis.get(key)))
    return parts


async def test_no_secret_in_redis_or_stdout(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
    capfd: pytest.CaptureFixture[str],
) -> None:
    gateway = await start_gateway(
        nursery, make_settings, github, mcp_resource_validation_strict=False, access_log="json"
    )
    backend: int = await nursery.start(functools.partial(serve_backend, "protected"))
    hostname = "mcp.example.com"
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {
                "hostname": hostname,
                "target_url": f"http://127.0.0.1:{backend}",
                "auth_enabled": True,
                "auth_required_users": ["*"],
            }
        )
    )
    resource = f"http://{hostname}:{gateway.http_port}"
    public_url = f"http://127.0.0.1:{gateway.http_port}"
    # The flow's own requests (register, authorize, consent, token) go through the public port
    # to the API hostname, so the data plane logs them too.
    async with httpx.AsyncClient(
        base_url=public_url, headers={"Host": "localhost"}, timeout=30
    ) as http:
        flow = FlowClient(http)
        client = await flow.register(scope="mcp:read mcp:write")
        authorized = await flow.authorize(client["client_id"], resource=resource)
        exchanged = await flow.exchange(client, authorized, resource=resource)
        assert exchanged.status_code == 200, exchanged.text
        tokens: dict[str, Any] = exchanged.json()
    github_token = next(iter(github._tokens))
    secrets = {
        "client_secret": client["client_secret"],
        "code": authorized.code,
        "code_verifier": authorized.verifier,
        "state": authorized.state,
        "access_token": tokens["access_token"],
        "refresh_token": tokens["refresh_token"],
        "github_token": github_token,
        "cookie": "cookie-secret-0123456789",
    }
    async with httpx.AsyncClient(
        base_url=public_url, headers={"Host": f"{hostname}:{gateway.http_port}"}, timeout=30
    ) as public:
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}

        async def served() -> bool:
            return (await public.get("/echo/ok", headers=bearer)).status_code == 200

        await eventually(served, what=f"{hostname} serving the token")
        leaky = "&".join(f"{name}={value}" for name, value in secrets.items())
        for headers in (bearer, {"Cookie": f"session={secrets['cookie']}"}, {}):
            await public.get(f"/echo/marked?{leaky}", headers=headers)
        await public.get("/echo/last", headers=bearer)

    async def last_logged() -> bool:  # (the first batch may not be written yet)
        return any("/echo/last" in part for part in await log_parts(storage))

    await eventually(last_logged, what="/echo/last in Redis")
    stored = await log_contents(storage)
    assert "/echo/marked?client_secret=REDACTED&code=REDACTED" in stored
    assert "alice" in stored  # the user is logged, by name
    out = capfd.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(line["request_path"] == "/echo/last" for line in lines)
    for name, value in secrets.items():
        assert value not in stored, f"the {name} is in Redis"
        assert value not in out, f"the {name} is on stdout"
