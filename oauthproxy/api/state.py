"""What the admin app needs from the process that serves it, attached to the app once."""

from __future__ import annotations

from dataclasses import dataclass

from quart import Quart

from oauthproxy.certificates.manager import CertificateManager
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage


@dataclass(frozen=True)
class AppState:
    settings: Settings
    storage: Storage
    started_at: float
    embedded_redis: bool
    certificates: CertificateManager | None = None
    """This replica's certificate manager; None when the app runs without one."""


def app_state(app: Quart) -> AppState:
    state: AppState = app.extensions["oauthproxy"]
    return state
