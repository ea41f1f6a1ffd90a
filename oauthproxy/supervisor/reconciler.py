"""The reconciler: desired state (Redis) against running instances, `decide`, apply.

Redis is the truth and events are triggers: an event makes the reconciler re-read the hostnames
(or the routes, or the services) it names and reconcile just them (`handle`); a full reconcile
(`reconcile_all`) runs at start, after Redis comes back, and on a timer as a safety net (both
driven by `workflow_loop.py`). While Redis is away every running instance keeps serving from its
in-memory snapshot; a Redis that lost its data is never applied (`continuity.py`).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace

import trio

from oauthproxy.logs.logger import RequestLogger
from oauthproxy.models.events import EventType
from oauthproxy.models.proxies import AuthMode, ProxyTarget
from oauthproxy.models.routes import Route, RouteScope, TargetType
from oauthproxy.proxy.access import audience_host
from oauthproxy.proxy.challenges import bounded
from oauthproxy.proxy.config import InstanceConfig, PublicPorts, Shared, build_config
from oauthproxy.proxy.guard import Guard
from oauthproxy.proxy.instance import Instance
from oauthproxy.proxy.login import BrowserLogin, callback_uris, gateway_client
from oauthproxy.proxy.loopback import from_loopback, nobody
from oauthproxy.proxy.responses import Unserved
from oauthproxy.proxy.upstream import UpstreamPool, tls_context
from oauthproxy.routing import RouteTable
from oauthproxy.settings import PublicApi, Settings
from oauthproxy.storage import Storage
from oauthproxy.storage.workflow import Delivery, WorkflowConsumer
from oauthproxy.supervisor.certificates import CertificateIndex, HostContexts
from oauthproxy.supervisor.continuity import Continuity, Verdict
from oauthproxy.supervisor.decide import (
    Action,
    Start,
    Stop,
    Update,
    Wanted,
    decide,
    unserved,
    usable_certificate,
)
from oauthproxy.tenancy.certificates import links

log = logging.getLogger(__name__)

_PROXY_EVENTS = {
    EventType.PROXY_CREATED,
    EventType.PROXY_UPDATED,
    EventType.PROXY_DELETED,
    EventType.CERTIFICATE_READY,
}


class Reconciler:
    """Owns every proxy instance (in its nursery) and the hostname → instance table, and makes
    what runs match what Redis holds: read, `decide` (pure), apply."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        nursery: trio.Nursery,
        consumer: WorkflowConsumer,
        ports: PublicPorts,
        continuity: Continuity,
        issuer_trust: ssl.SSLContext | bool = True,
        requests: RequestLogger | None = None,
    ) -> None:
        self.instances: dict[str, Instance] = {}
        self._requests = requests
        """Where every instance logs its requests (None: request logging is off)."""
        self._settings = settings
        self._storage = storage
        self._nursery = nursery
        self._consumer = consumer
        self.ports = ports
        self._continuity = continuity
        self._upstream_tls = tls_context(
            str(settings.upstream_ca_bundle) if settings.upstream_ca_bundle else None
        )
        self._tls_contexts = HostContexts(http2=settings.http2_enabled)
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
            websocket_idle_timeout=settings.proxy_websocket_idle_timeout,
            identity_max_age=settings.oauth_identity_max_age,
        )
        self._gateway_redirects: list[str] | None = None
        self._admin_or_not: dict[str, bool] = {}
        """Proxy owners' token hashes, and whether each is an admin token's."""

    @property
    def running_count(self) -> int:
        return len(self._running)

    async def add_builtin(self, target: ProxyTarget) -> None:
        """A hostname the gateway serves itself (the admin API on `localhost`), never from Redis."""
        self._builtin[target.hostname] = Wanted(target)
        await self._start(Wanted(target))

    # --- reconciling -------------------------------------------------------------------------

    def unserved(self, hostname: str) -> Unserved | None:
        """Why the proxy for `hostname` has no instance (None: no such proxy, or it runs)."""
        wanted = self._desired.get(hostname)
        return None if wanted is None else unserved(wanted)

    async def reconcile_all(self) -> None:
        """Make everything that runs match Redis, unless Redis lost its data (read first, then
        checked: a Redis emptied while it was read is not applied either)."""
        proxies = await self._storage.proxies.all()
        certificates = CertificateIndex(await self._storage.certificates.all())
        routes = RouteTable.build(await self._storage.routes.all(), self._shared.routes)
        services = await self._storage.service_urls()
        down = await self._storage.docker_services.down()
        if await self._continuity.check() is Verdict.LOST:
            return
        self._desired = {
            p.hostname: Wanted(p, usable_certificate(p, certificates.for_proxy(p)))
            for p in proxies
            if p.hostname not in self._builtin
        }
        self._shared = replace(self._shared, routes=routes, services=services, down=down)
        await self._reload_shared(routes=False, services=False)
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
            stored = await self._storage.routes.all()
            shared = replace(shared, routes=RouteTable.build(stored, shared.routes))
        if services:
            urls = await self._storage.service_urls()
            down = await self._storage.docker_services.down()
            shared = replace(shared, services=urls, down=down)
        proxies = {hostname: wanted.target for hostname, wanted in self._desired.items()}
        admins = await self._admin_owners(proxies.values())
        self._shared = replace(shared, proxies=proxies, admins=admins)

    async def _admin_owners(self, targets: Iterable[ProxyTarget]) -> frozenset[str]:
        """Which of `targets`' owners are admin tokens; each owner is looked up once (a token's
        hash names one token, admin or not, for its whole life: a new secret is a new hash)."""
        for owner in {target.owner_token_hash for target in targets} - self._admin_or_not.keys():
            if owner is not None:
                token = await self._storage.tokens.by_hash(owner)
                self._admin_or_not[owner] = token is not None and token.is_admin
        return frozenset(owner for owner, admin in self._admin_or_not.items() if admin)

    async def _refresh_changed(self, before: Shared, hostnames: set[str]) -> None:
        """After routes or services changed: rebuild the running instances they concern, and
        those depending on `hostnames`' proxies, and no other. Every instance was rebuilt (each
        walking every route), so one owner churning its own routes or services held the event
        loop every tenant shares for a third of a second per change at 500 instances. A global
        route (the admin's) concerns everyone; a proxy-scoped route, the proxies it names; a
        service, the instances routing to it by name, or (a Docker service going down or up)
        with a destination at its URL."""
        routes = _changed_routes(before.routes, self._shared.routes)
        if any(route.scope is RouteScope.GLOBAL for route in routes):
            await self._refresh_all()
            return
        named = {hostname for route in routes for hostname in route.proxy_hostnames}
        # a service's URL reaches a destination only through a `service` route naming it; a
        # Docker service's container stopping or starting (`down`: URL → name) changes every
        # destination at its URL
        services, down = (before.services, self._shared.services), (before.down, self._shared.down)
        urls = _changed(*down)
        names = _changed(*services) | _changed(*down, values=True)
        for hostname, wanted in [*self._running.items(), *self._builtin.items()]:
            config = self.instances[hostname].config
            if hostname in named or (config is not None and _goes_to(config, urls, names)):
                await self.instances[hostname].update(self._config(wanted))
        if hostnames:
            await self._refresh_depending_on(hostnames)

    async def _refresh_all(self) -> None:
        """Rebuild every running instance's snapshot from the current shared inputs."""
        for hostname, wanted in [*self._running.items(), *self._builtin.items()]:
            await self.instances[hostname].update(self._config(wanted))

    async def _refresh_depending_on(self, hostnames: set[str]) -> None:
        """Rebuild the running instances whose snapshot depends on one of `hostnames'` proxies,
        and no other: those whose routes send requests to one (a `hostname` route's target is
        baked into the snapshot; the snapshot's own routes say which, as the route table has
        not changed), and those whose extra audiences name one (which are kept only while the
        name is not another owner's: `access.own_audiences`). Every instance was rebuilt, so
        one owner making and deleting proxies kept the event loop busy rebuilding every
        tenant's (0.4 ms an instance)."""
        for hostname, wanted in [*self._running.items(), *self._builtin.items()]:
            config = self.instances[hostname].config
            if config is None:
                continue
            routing = any(
                route.target_type is TargetType.HOSTNAME and route.target_value in hostnames
                for route in config.routes.routes
            )
            audiences = wanted.target.auth_allowed_audiences or ()
            if routing or any(audience_host(audience) in hostnames for audience in audiences):
                await self.instances[hostname].update(self._config(wanted))

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
        before = self._shared
        if hostnames or routes or services:
            await self._reload_shared(routes=routes, services=services)
        if routes or services:
            await self._refresh_changed(before, hostnames)
        elif hostnames:
            await self._refresh_depending_on(hostnames)
        await self._apply(decide(self._desired, self._running, hostnames))
        await self._consumer.settled(hostnames)
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
                http_port=self.ports.http,
                https_port=self.ports.https if wanted.certificate else None,
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
                if _state(action.wanted) != _state(self._running.get(hostname, action.wanted)):
                    self._lifecycle("proxy.upgraded", hostname, _state(action.wanted))
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
            challenges=bounded(self._storage.challenges.get, self._settings.api_redis_timeout),
            ports=self.ports,
            admits=self._public_api if target.hostname in self._builtin else None,
            requests=self._requests,
        )
        await self._nursery.start(instance.run)
        self.instances[target.hostname] = instance
        if target.hostname not in self._builtin:
            self._running[target.hostname] = wanted
        log.info("serving %s → %s (%s)", target.hostname, target.target_url, _state(wanted))
        self._lifecycle("proxy.served", target.hostname, _state(wanted))

    def _stop(self, hostname: str) -> None:
        instance = self.instances.pop(hostname)
        self._running.pop(hostname, None)
        self._tls_contexts.forget(hostname)
        instance.stop()
        log.info("stopped %s", hostname)
        self._lifecycle("proxy.stopped", hostname, "")

    def _lifecycle(self, name: str, hostname: str, detail: str) -> None:
        """An instance's lifecycle event, in the request log (its owner sees it there)."""
        if self._requests is not None and hostname not in self._builtin:
            self._requests.event(name, host=hostname, detail=detail)

    def drain_all(self, settled: Callable[[], Awaitable[None]] | None = None) -> None:
        """Shutdown: every instance serves what its open connections send, closing each after
        its response, until the grace deadline (not `_stop`: a deleted proxy answers 404).
        `settled`: see `Instance.drain`."""
        for instance in self.instances.values():
            instance.drain(settled)


def _state(wanted: Wanted) -> str:
    return "running_https" if wanted.certificate is not None else "running_http"


def _changed_routes(before: RouteTable, after: RouteTable) -> list[Route]:
    """The routes added, removed or changed between two tables (both versions of a changed
    one)."""
    old = {each.route.route_id: each.route for each in before.compiled}
    new = {each.route.route_id: each.route for each in after.compiled}
    return [
        route
        for route_id in old.keys() | new.keys()
        if old.get(route_id) != new.get(route_id)
        for route in (old.get(route_id), new.get(route_id))
        if route is not None
    ]


def _changed(
    before: Mapping[str, str], after: Mapping[str, str], *, values: bool = False
) -> set[str]:
    """The keys (or, with `values`, the old and new values) of the entries added, removed or
    changed between two mappings."""
    keys = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    if not values:
        return keys
    return {value for key in keys for value in (before.get(key), after.get(key)) if value}


def _goes_to(config: InstanceConfig, urls: set[str], services: set[str]) -> bool:
    """Whether any of the instance's destinations is one of `urls` (its proxy's target, a URL
    route's), or any of its routes targets one of `services` by name."""
    if config.default.upstream in urls:
        return True
    return any(
        route.target_value in services
        if route.target_type is TargetType.SERVICE
        else route.target_value.rstrip("/") in urls
        for route in config.routes.routes
    )
