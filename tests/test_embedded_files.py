"""The embedded Redis's files on disk: every secret the gateway keeps is in them."""

from __future__ import annotations

import functools
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import trio

from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from tests.eventually import eventually


async def test_the_data_directory_is_private_even_when_it_existed(
    nursery: trio.Nursery, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """The server writes its append-only file and snapshot world-readable, and they hold every
    token's secret (the admin's too), the OAuth signing key and every certificate's key; only
    the directory's mode kept others out, and it was made 0700 only when the gateway made it.
    A container's `/data`, a bind mount or a directory the operator made stayed 0755, and any
    local user read the admin token from the append-only file. A file left readable by an
    earlier run is made private too."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)  # as `mkdir -p /data` in a Containerfile leaves it
    (data / "dump.rdb").write_bytes(b"an earlier run's snapshot")
    (data / "dump.rdb").chmod(0o644)
    settings = make_settings(redis_url=None, oauthproxy_data_dir=data)
    ready: Ready = await nursery.start(functools.partial(serve, settings, handle_signals=False))
    headers = {"Authorization": f"Bearer {ready.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=ready.api_url, headers=headers) as api:
        created = await api.post("/api/v1/tokens/generate", json={"name": "victim"})
        assert created.status_code == 201, created.text
    secret = created.json()["token"].encode()

    async def on_disk() -> list[Path] | None:
        found = [p for p in data.rglob("*") if p.is_file() and secret in p.read_bytes()]
        return found or None

    assert await eventually(on_disk, what="the new token's secret on disk")
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "dump.rdb").stat().st_mode) & 0o077 == 0
