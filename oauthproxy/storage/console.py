"""Raw Redis commands for `just redis-cli`, against REDIS_URL or the running embedded server."""

from __future__ import annotations

from pathlib import Path

import coredis

from oauthproxy.storage.embedded import running_server_url


def console_url(redis_url: str | None, data_dir: Path) -> str | None:
    """Where the gateway's state is: REDIS_URL, or the embedded server a running gateway started."""
    return redis_url or running_server_url(data_dir)


def is_redis_error(error: BaseException) -> bool:
    return isinstance(error, coredis.exceptions.RedisError)


def _raw(response: object, **_: object) -> object:
    return response


async def execute(url: str, argv: list[str]) -> object:
    """Run one command (e.g. `["KEYS", "token:*"]`) and return Redis's reply."""
    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    async with client:
        try:
            request = client.create_request(argv[0].encode(), *argv[1:], callback=_raw)
            return await request
        except coredis.exceptions.RedisError as error:
            return f"(error) {error}"
