"""The supervisor's async shell: consume workflow events, reconcile, start/update/stop instances.

Redis is the truth and events are triggers: an event makes the supervisor re-read the hostnames
(or the routes, or the services) it names and reconcile them with `decide`; a full reconcile runs
at start, after Redis comes back, and every `FULL_RECONCILE_SECONDS` as a safety net. While Redis
is away, every running instance keeps serving from its in-memory snapshot.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import trio

from oauthproxy.errors import StorageUnavailable
from oauthproxy.logs.logger import RequestLogger
from oauthproxy.models.events import EventType
from oauthproxy.models.proxies import AuthMode, ProxyTarget
from oauthproxy.models.routes import TargetType
from oauthproxy.oauth.verify import load_verifier
from oauthproxy.proxy.config import InstanceConfig, PublicPorts, Shared, build_config
from oauthproxy.proxy.guard import Guard
from oauthproxy.proxy.instance import Instance
from oauthproxy.proxy.login import BrowserLogin, callback_uris, gateway_client
from oauthproxy.proxy.loopback import from_loopback, nobody
from oauthproxy.proxy.upstream import UpstreamPool, tls_context
from oauthproxy.routing import RouteTable
from oauthproxy.settings import PublicApi, Settings
from oauthproxy.storage import Storage
from oauthproxy.storage.workflow import Delivery, WorkflowConsumer
from oauthproxy.supervisor.certificates import CertificateIndex, HostContexts
from oauthproxy.supervisor.decide import (
    Action,
    Start,
    Stop,
    Update,
    Wanted,
    decide,
    usable_certificate,
)
from oauthproxy.tenancy.certificates import links

log = logging.getLogger(__name__)

FULL_RECONCILE_SECONDS = 60.0
RECLAIM_EVERY_SECONDS = 10.0
RECLAIM_IDLE_MILLISECONDS = 30_000
MAX_BACKOFF_SECONDS = 5.0
KEY_REFRESH_SECONDS = 60.0
REVOCATION_WAIT_MILLISECONDS = 500

_PROXY_EVENTS = {
    EventType.PROXY_CREATED,
    EventType.PROXY_UPDATED,
    EventType.PROXY_DELETED,
    EventType.CERTIFICATE_READY,
}


class Supervisor:
    """Owns every proxy instance (in its nursery) and the hostname → instance table."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        nursery: trio.Nursery,
        replica: str,
        issuer_trust: ssl.SSLContext | bool = True,
        requests: RequestLogger | None = None,
    ) -> None:
        self.instances: dict[str, Instance] = {}
        self._requests = requests
        self._settings = settings
        self._storage = storage
        self._nursery = nursery
        self._consumer = storage.workflow_consumer(replica)
        self.ports = PublicPorts()
        self._upstream_tls = tls_context(
            str(settings.upstream_ca_bundle) if settings.upstream_ca_bundle else None
        )
        self._tls_contexts = HostContexts()
        self._desired: dict[str, Wanted] = {}
        self._running: dict[str, Wanted] = {}
        self._builtin: dict[str, Wanted] = {}
        self._public_api = nobody if settings.api_on_public_port is PublicApi.OFF else from_loopback
        self.guard = Guard()
        self._shared = Shared(
            routes=RouteTable.build([]),
            services={},
            proxies={},
            request_timeout=settings.proxy_request_timeout,
            guard=self.guard,
            issuer=settings.oauth_issuer_url,
            global_users=settings.oauth_allowed_github_users,
            login=BrowserLogin.of(settings, storage.proxy_logins, issuer_trust),
        )
        self._gateway_redirects: list[str] | None = None

    @property
    def consumer(self) -> WorkflowConsumer:
        return self._consumer

    async def add_builtin(self, target: ProxyTarget) -> None:
        """A hostname the gateway serves itself (the admin API on `localhost`), never from Redis."""
        self._builtin[target.hostname] = Wanted(target)
        await self._start(Wanted(target))

    # --- reconciling -------------------------------------------------------------------------

    async def reconcile_all(self) -> None:
        proxies = await self._storage.proxies.all()
        certificates = CertificateIndex(await self._storage.certificates.all())
        self._desired = {
            p.hostname: Wanted(p, usable_certificate(p, certificates.for_proxy(p)))
            for p in proxies
            if p.hostname not in self._builtin
        }
        await self._reload_shared(routes=True, services=True)
        await self._refresh_all()
        await self._apply(decide(self._desired, self._running))
        await self.sync_gateway_client()

    async def _wanted(self, hostname: str) -> Wanted | None:
        """Re-read one proxy and the certificate it would serve HTTPS with."""
        target = await self._storage.proxies.get(hostname)
        if target is None:
            return None
        name = target.cert_name or await self._storage.certificates.name_for_domain(hostname)
        certificate = await self._storage.certificates.get(name) if name else None
        if target.cert_name is None and certificate is not None and not links(certificate, target):
            # the domain maps to another owner's certificate: serve one of the proxy's owner's
            index = CertificateIndex(await self._storage.certificates.all())
            certificate = index.for_proxy(target)
        return Wanted(target, usable_certificate(target, certificate))

    async def _reload_shared(self, *, routes: bool, services: bool) -> None:
        shared = self._shared
        if routes:
            shared = replace(shared, routes=RouteTable.build(await self._storage.routes.all()))
        if services:
            shared = replace(shared, services=await self._storage.service_urls())
        proxies = {hostname: wanted.target for hostname, wanted in self._desired.items()}
        self._shared = replace(shared, proxies=proxies)

    async def _refresh_all(self) -> None:
        """Rebuild every running instance's snapshot from the current shared inputs."""
        for hostname, wanted in [*self._running.items(), *self._builtin.items()]:
            await self.instances[hostname].update(self._config(wanted))

    def _routes_name_hostnames(self) -> bool:
        return any(c.route.target_type is TargetType.HOSTNAME for c in self._shared.routes.compiled)

    async def handle(self, deliveries: Iterable[Delivery]) -> None:
        """Act on a batch of events: re-read what they name, then reconcile just that."""
        hostnames: set[str] = set()
        routes = services = False
        for delivery in deliveries:
            event = delivery.event
            if event.event_type in _PROXY_EVENTS:
                hostnames.add(event.hostname)
            routes |= event.event_type is EventType.ROUTES_CHANGED
            services |= event.event_type is EventType.SERVICES_CHANGED
        hostnames -= set(self._builtin)
        await self._consumer.mark_pending(hostnames)
        for hostname in hostnames:
            wanted = await self._wanted(hostname)
            if wanted is None:
                self._desired.pop(hostname, None)
            else:
                self._desired[hostname] = wanted
        if hostnames or routes or services:
            await self._reload_shared(routes=routes, services=services)
        if routes or services or (hostnames and self._routes_name_hostnames()):
            await self._refresh_all()
        await self._apply(decide(self._desired, self._running, hostnames))
        if hostnames:
            await self.sync_gateway_client()

    async def sync_gateway_client(self) -> None:
        """Register the gateway's browser-login client with exactly the callback URIs of the
        `redirect`-mode proxies (written only when they change)."""
        uris = sorted(
            uri
            for wanted in self._desired.values()
            if wanted.target.auth_enabled and wanted.target.auth_mode is AuthMode.REDIRECT
            for uri in callback_uris(
                wanted.target.hostname,
                http_port=self.ports.http or self._settings.http_port,
                https_port=(self.ports.https or self._settings.https_port)
                if wanted.certificate
                else None,
            )
        )
        if uris != self._gateway_redirects:
            await self._storage.oauth.put_client(gateway_client(uris))
            self._gateway_redirects = uris

    async def _apply(self, actions: list[Action]) -> None:
        states: dict[str, str | None] = {}
        for action in actions:
            if isinstance(action, Start):
                await self._start(action.wanted)
                states[action.wanted.target.hostname] = _state(action.wanted)
            elif isinstance(action, Update):
                hostname = action.wanted.target.hostname
                await self.instances[hostname].update(self._config(action.wanted))
                self._running[hostname] = action.wanted
                states[hostname] = _state(action.wanted)
            elif isinstance(action, Stop):
                self._stop(action.hostname)
                states[action.hostname] = None
        await self._consumer.record(states)

    def _config(self, wanted: Wanted) -> InstanceConfig:
        return build_config(wanted.target, self._shared, self._tls_contexts.context(wanted))

    async def _start(self, wanted: Wanted) -> None:
        target = wanted.target
        pool = UpstreamPool(
            connect_timeout=self._settings.proxy_connect_timeout, tls=self._upstream_tls
        )
        instance = Instance(
            target.hostname,
            self._config(wanted),
            pool,
            grace=self._settings.shutdown_grace_seconds,
            idle_timeout=self._settings.proxy_idle_timeout,
            header_timeout=self._settings.proxy_header_timeout,
            challenges=self._storage.challenges.get,
            ports=self.ports,
            admits=self._public_api if target.hostname in self._builtin else None,
            requests=self._requests,
        )
        await self._nursery.start(instance.run)
        self.instances[target.hostname] = instance
        if target.hostname not in self._builtin:
            self._running[target.hostname] = wanted
        log.info("serving %s → %s (%s)", target.hostname, target.target_url, _state(wanted))

    def _stop(self, hostname: str) -> None:
        instance = self.instances.pop(hostname)
        self._running.pop(hostname, None)
        self._tls_contexts.forget(hostname)
        instance.stop()
        log.info("stopped %s", hostname)

    async def follow_revocations(self) -> None:
        """Keep the guard's revoked tokens and signing keys current, whatever Redis does."""
        last_id = "0"  # first everything still in the stream, then what comes
        backoff = 0.1
        next_keys = trio.current_time()
        while True:
            try:
                if trio.current_time() >= next_keys:
                    self.guard.verifier = await load_verifier(self._storage, self._settings)
                    self.guard.forget_expired(time.time())
                    next_keys = trio.current_time() + KEY_REFRESH_SECONDS
                for revocation in await self._storage.oauth.revocations_since(
                    last_id, block_ms=REVOCATION_WAIT_MILLISECONDS
                ):
                    self.guard.revoke(revocation.jti, revocation.expires_at)
                    last_id = revocation.id
                backoff = 0.1
            except StorageUnavailable:
                await trio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def stop_all(self) -> None:
        for hostname in list(self.instances):
            self._stop(hostname)

    # --- the event loop ----------------------------------------------------------------------

    async def consume(self) -> None:
        """Read and act on events forever; ride out Redis outages, then catch up."""
        backoff = 0.1
        joined = True
        next_full = trio.current_time() + FULL_RECONCILE_SECONDS
        next_reclaim = trio.current_time()
        while True:
            try:
                if not joined:
                    await self._consumer.join()
                    await self.reconcile_all()
                    joined, backoff = True, 0.1
                    log.info("Redis is back: reconciled %d proxies", len(self._running))
                deliveries = await self._consumer.read()
                now = trio.current_time()
                if now >= next_reclaim:
                    deliveries += await self._consumer.reclaim(RECLAIM_IDLE_MILLISECONDS)
                    next_reclaim = now + RECLAIM_EVERY_SECONDS
                if deliveries:
                    await self.handle(deliveries)
                    await self._consumer.ack(deliveries)
                if now >= next_full:
                    await self.reconcile_all()
                    next_full = now + FULL_RECONCILE_SECONDS
            except StorageUnavailable as error:
                if joined:
                    log.warning("Redis unavailable (%s); instances keep serving", error)
                joined = False
                await trio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def _issuer_trust(ca_bundle: Path | None) -> ssl.SSLContext | bool:
    """How the browser login verifies the authorization server's TLS (`OAUTH_CA_BUNDLE`)."""
    return ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True


def _state(wanted: Wanted) -> str:
    return "running_https" if wanted.certificate is not None else "running_http"


async def serve_supervisor(
    settings: Settings,
    storage: Storage,
    replica: str,
    builtin: list[ProxyTarget],
    shutdown: trio.Event,
    *,
    requests: RequestLogger | None = None,
    task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the supervisor until `shutdown`; then stop every instance and wait for them to drain."""
    trust = await trio.to_thread.run_sync(_issuer_trust, settings.oauth_ca_bundle)
    async with trio.open_nursery() as instances:
        supervisor = Supervisor(settings, storage, instances, replica, trust, requests)
        await supervisor.consumer.join()
        supervisor.guard.verifier = await load_verifier(storage, settings)
        for target in builtin:
            await supervisor.add_builtin(target)
        await supervisor.reconcile_all()
        task_status.started(supervisor)
        async with trio.open_nursery() as loop:
            loop.start_soon(supervisor.consume)
            loop.start_soon(supervisor.follow_revocations)
            await shutdown.wait()
            loop.cancel_scope.cancel()
        supervisor.stop_all()
