"""The bootstrap admin token: from `ADMIN_TOKEN`, or generated once and kept in the data dir."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import trio

from oauthproxy.files import write_private
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from oauthproxy.storage.tokens import new_token

ADMIN_NAME = "admin"


class AdminTokenSource(StrEnum):
    ENVIRONMENT = "ADMIN_TOKEN"
    GENERATED = "generated"
    STORED = "stored"


@dataclass(frozen=True)
class AdminToken:
    source: AdminTokenSource
    file: Path
    secret: str


def admin_token_file(settings: Settings) -> Path:
    return settings.oauthproxy_data_dir / "admin-token"


async def ensure_admin_token(settings: Settings, storage: Storage) -> AdminToken:
    """Make sure the admin token exists in Redis and its secret is in the data dir's file.

    Run at start-up and again when Redis lost its data: the secret is ADMIN_TOKEN, else the one
    Redis holds, else the one the data dir's file kept, else a new one."""
    file = admin_token_file(settings)
    existing = await storage.tokens.get(ADMIN_NAME)
    if settings.admin_token is not None:
        secret = settings.admin_token.get_secret_value()
        source = AdminTokenSource.ENVIRONMENT
    elif existing is not None and existing.is_admin:
        secret = existing.token
        source = AdminTokenSource.STORED
    elif (kept := await trio.to_thread.run_sync(_read_secret, file)) is not None:
        secret = kept  # Redis lost it (restarted empty): the same token as before, not a new one
        source = AdminTokenSource.STORED
    else:
        secret = new_token(ADMIN_NAME).token
        source = AdminTokenSource.GENERATED
    if existing is None or existing.token != secret or not existing.is_admin:
        token = new_token(
            ADMIN_NAME,
            secret=secret,
            cert_email=(existing.cert_email if existing else None) or settings.admin_email,
            created_by=source.value,
            is_admin=True,
            github_users=existing.github_users if existing else None,
        )
        await storage.tokens.put(token)
    await trio.to_thread.run_sync(write_private, file, secret + "\n")
    return AdminToken(source=source, file=file, secret=secret)


def read_admin_token(settings: Settings) -> str | None:
    """The admin token as this machine knows it: `ADMIN_TOKEN`, else the data dir's file."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    return _read_secret(admin_token_file(settings))


def _read_secret(file: Path) -> str | None:
    try:
        return file.read_text().strip() or None
    except OSError:
        return None
