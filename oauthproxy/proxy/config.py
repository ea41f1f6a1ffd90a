"""An instance's configuration snapshot, precomputed whenever proxies, routes or services change.

Nothing here runs per request except `InstanceConfig.destination`, which is a route match over a
precompiled table plus a dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from oauthproxy.models.proxies import DEFAULT_HEADER_PREFIX, ProxyTarget
from oauthproxy.models.routes import Route
from oauthproxy.proxy.forward import Destination
from oauthproxy.proxy.guard import Guard
from oauthproxy.proxy.headers import (
    RequestRewrite,
    ResponseRewrite,
    encode_headers,
    identity_prefix,
)
from oauthproxy.proxy.login import BrowserLogin
from oauthproxy.proxy.protect import Protection
from oauthproxy.proxy.tls import HostContext
from oauthproxy.proxy.upstream import OriginKey, parse_origin
from oauthproxy.routing import ProxyRoutes, RouteTable, route_target_url


@dataclass(frozen=True)
class Shared:
    """What every instance's configuration is built from besides its own proxy target."""

    routes: RouteTable
    services: Mapping[str, str]
    proxies: Mapping[str, ProxyTarget]
    request_timeout: float
    guard: Guard
    issuer: str
    global_users: str
    """`OAUTH_ALLOWED_GITHUB_USERS`: who may pass when a proxy names no users itself."""
    login: BrowserLogin | None = None
    """Browser login for `redirect`-mode proxies."""
    websocket_idle_timeout: float = 3600.0
    """`PROXY_WEBSOCKET_IDLE_TIMEOUT`: how long a WebSocket may carry nothing either way."""
    admins: frozenset[str] = frozenset()
    """The hashes of the admin tokens that own proxies: the others' proxies are a tenant's (their
    extra audiences and identity headers are narrowed: `access.AccessPolicy`)."""
    down: Mapping[str, str] = field(default_factory=dict)
    """The URLs of Docker services whose container does not run, to the service's name."""
    identity_max_age: int = 0
    """`OAUTH_IDENTITY_MAX_AGE` (see `access.AccessPolicy`)."""


@dataclass
class PublicPorts:
    """Where the public listeners really listen, once they do (redirects need the HTTPS port)."""

    http: int = 0
    https: int = 0


@dataclass(frozen=True)
class InstanceConfig:
    target: ProxyTarget
    default: Destination
    routes: ProxyRoutes
    shared: Shared
    tls: HostContext | None = None
    """The context HTTPS handshakes for this hostname get; None: no HTTPS (yet)."""
    protection: Protection | None = None
    """OAuth: bearer checks and resource metadata; None when the proxy has neither."""
    _by_route: dict[str, Destination | None] = field(default_factory=dict, compare=False)

    def destination(self, path: str, method: str) -> Destination | None:
        """Where a request goes: the first matching route's target, else the proxy's target.
        None when a matching route's target cannot be resolved (unknown service, say)."""
        route = self.routes.match(path, method)
        if route is None:
            return self.default
        if route.route_id not in self._by_route:
            self._by_route[route.route_id] = self._route_destination(route)
        return self._by_route[route.route_id]

    def origins(self) -> frozenset[OriginKey]:
        """Every origin a request can go to under this configuration: the proxy's target and
        the targets of its routes. The upstream pool keeps connections to these only."""
        destinations: list[Destination | None] = [self.default]
        for route in self.routes.routes:
            if route.route_id not in self._by_route:
                self._by_route[route.route_id] = self._route_destination(route)
            destinations.append(self._by_route[route.route_id])
        return frozenset(each.origin.key for each in destinations if each is not None)

    def _route_destination(self, route: Route) -> Destination | None:
        url = route_target_url(route, services=self.shared.services, proxies=self.shared.proxies)
        if url is None:
            return None
        try:
            destination = destination_for(
                url,
                self.target,
                self.shared.request_timeout,
                self.shared.down,
                route_id=route.route_id,
                idle_timeout=self.shared.websocket_idle_timeout,
            )
        except ValueError:
            return None
        owner = self.target.owner_token_hash
        if owner is None or owner in self.shared.admins or route.owner_token_hash == owner:
            return destination
        # another's route (the admin's global one) on an owner's proxy: its target and name
        # are not the owner's to read (the owner reads this proxy's request log), and its
        # backend gets none of the owner's custom headers, nor any client header under the
        # default identity prefix: an owner who moved its proxy's prefix could otherwise set
        # `X-Auth-User-Name: admin` (or let a client's through) to the admin's backend
        rewrite = replace(
            destination.rewrite,
            custom=[],
            strip_prefix=tuple(
                {identity_prefix(DEFAULT_HEADER_PREFIX), *destination.rewrite.strip_prefix}
            ),
        )
        return replace(destination, rewrite=rewrite, upstream="", route_id="")


def destination_for(
    url: str,
    target: ProxyTarget,
    request_timeout: float,
    down: Mapping[str, str] | None = None,
    *,
    route_id: str = "",
    idle_timeout: float = 3600.0,
) -> Destination:
    origin = parse_origin(url)
    rewrite = RequestRewrite(
        preserve_host=target.preserve_host_header,
        upstream_host=origin.host_header,
        custom=encode_headers(target.custom_headers),
        strip_prefix=tuple(filter(None, [identity_prefix(target.auth_header_prefix)])),
    )
    return Destination(
        origin=origin,
        rewrite=rewrite,
        response=ResponseRewrite(encode_headers(target.custom_response_headers)),
        request_timeout=request_timeout,
        upstream=url.rstrip("/"),
        route_id=route_id,
        down=(down or {}).get(url.rstrip("/")),
        websocket_idle_timeout=idle_timeout,
    )


def build_config(
    target: ProxyTarget, shared: Shared, tls: HostContext | None = None
) -> InstanceConfig:
    return InstanceConfig(
        target=target,
        default=destination_for(
            str(target.target_url),
            target,
            shared.request_timeout,
            shared.down,
            idle_timeout=shared.websocket_idle_timeout,
        ),
        routes=shared.routes.for_proxy(target),
        shared=shared,
        tls=tls,
        protection=_protection(target, shared),
    )


def _protection(target: ProxyTarget, shared: Shared) -> Protection | None:
    if not (target.auth_enabled or target.resource_override_backend):
        return None
    return Protection.of(
        target,
        issuer=shared.issuer,
        global_users=shared.global_users,
        guard=shared.guard,
        proxies=shared.proxies,
        admins=shared.admins,
        identity_max_age=shared.identity_max_age,
    )
