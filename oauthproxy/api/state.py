"""What the admin app needs from the process that serves it, attached to the app once."""

from __future__ import annotations

from dataclasses import dataclass, field

from quart import Quart

from oauthproxy.api.remembered import Remembered
from oauthproxy.certificates.manager import CertificateManager
from oauthproxy.condition import GatewayCondition
from oauthproxy.logs.logger import RequestLogger
from oauthproxy.services.docker import DockerEngine
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage


@dataclass(frozen=True)
class ListenerPorts:
    """Where the gateway's own listeners really listen (a port of 0 in the settings is only known
    once bound; every listener is bound before the app exists), and the port of the Redis it
    keeps its state in (the embedded one, or `REDIS_URL`'s). Owner tokens may not target these
    ports on this host: a proxy to the gateway's own Redis would carry requests of the owner's
    choosing into it."""

    redis: int = 0
    api: int = 0
    http: int = 0
    https: int = 0
    proxy_protocol: int = 0

    def known(self, settings: Settings) -> frozenset[int]:
        """Every listener port: the bound one, else the configured one (before it binds)."""
        pairs = (
            (self.api, settings.api_port),
            (self.http, settings.http_port),
            (self.https, settings.https_port),
            (self.proxy_protocol, settings.proxy_protocol_port),
        )
        ports = {bound or configured for bound, configured in pairs} | {self.redis}
        return frozenset(ports) - {0}


@dataclass(frozen=True)
class AppState:
    settings: Settings
    storage: Storage
    started_at: float
    embedded_redis: bool
    certificates: CertificateManager | None = None
    """This replica's certificate manager; None when the app runs without one."""
    listeners: ListenerPorts = field(default_factory=ListenerPorts)
    requests: RequestLogger | None = None
    """This replica's request logger (its counters: written, dropped, buffered)."""
    condition: GatewayCondition = field(default_factory=lambda: GatewayCondition(ready=True))
    """Starting, or holding a configuration Redis lost; an app without a gateway is ready."""
    docker: DockerEngine | None = None
    """The engine at DOCKER_HOST (`create_app` makes one from the settings)."""
    docker_status: Remembered = field(default_factory=Remembered)
    """The Docker engine's health for anonymous `/health` (each ask runs the docker CLI: a
    process of its own and tens of milliseconds)."""
    certificate_summary: Remembered = field(default_factory=Remembered)
    """The certificates' counts for anonymous `/health` (each ask scans Redis's keyspace: 200
    SCAN round trips at 200,000 keys, from anyone)."""


def app_state(app: Quart) -> AppState:
    state: AppState = app.extensions["oauthproxy"]
    return state
