"""The route table: every enabled route compiled and in priority order, and its per-proxy views.

Build a `RouteTable` when the route set changes, take a proxy's `ProxyRoutes` from it when the
table or the proxy's configuration changes, and call `match` on every request.

A request is matched against the routes that apply to its proxy, highest priority first (then by
route id): a regex route matches when its pattern matches at the start of the path (`match`, on
RE2: linear in the path's length whatever the pattern, and only for paths of at most
`MAX_MATCHED_PATH` bytes, see `oauthproxy.linear_regex`), any other
route when the path starts with its `path_pattern`; a route without methods (None or
[]) takes every method.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from oauthproxy.linear_regex import MAX_MATCHED_PATH, Regex, compile_linear
from oauthproxy.models.proxies import ProxyTarget, RouteMode
from oauthproxy.models.routes import Route, RouteScope

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    route: Route
    regex: Regex | None
    methods: frozenset[str] | None
    usable: bool = True
    """False for a regex RE2 cannot compile (validated routes always can): it matches nothing."""

    @classmethod
    def of(cls, route: Route) -> CompiledRoute:
        methods = frozenset(route.methods) if route.methods else None
        if not route.is_regex:
            return cls(route, None, methods)
        try:
            return cls(route, compile_linear(route.path_pattern), methods)
        except ValueError as error:
            log.warning("route %s matches nothing: %s", route.route_id, error)
            return cls(route, None, methods, usable=False)

    def matches(self, path: str, method: str) -> bool:
        """`path` is normalised (`oauthproxy.proxy.request`); `method` is upper-case."""
        if not self.usable or (self.methods is not None and method not in self.methods):
            return False
        if self.regex is None:
            return path.startswith(self.route.path_pattern)
        return len(path) <= MAX_MATCHED_PATH and self.regex.match(path) is not None


@dataclass(frozen=True, slots=True)
class RouteSelection:
    """The part of a proxy's configuration that decides which routes apply to it."""

    hostname: str
    mode: RouteMode
    enabled: frozenset[str]
    disabled: frozenset[str]

    @classmethod
    def of(cls, proxy: ProxyTarget) -> RouteSelection:
        return cls(
            proxy.hostname,
            proxy.route_mode,
            frozenset(proxy.enabled_routes),
            frozenset(proxy.disabled_routes),
        )

    def selects(self, route: Route) -> bool:
        if self.mode is RouteMode.NONE or route.route_id in self.disabled:
            return False
        if route.scope is RouteScope.PROXY and self.hostname not in route.proxy_hostnames:
            return False
        return self.mode is RouteMode.ALL or route.route_id in self.enabled


@dataclass(frozen=True, slots=True)
class ProxyRoutes:
    """The routes that apply to one proxy, in the order they are tried."""

    compiled: tuple[CompiledRoute, ...] = ()

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(each.route for each in self.compiled)

    def match(self, path: str, method: str) -> Route | None:
        """The first route that takes this request, or None."""
        method = method.upper()
        for each in self.compiled:
            if each.matches(path, method):
                return each.route
        return None


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Every enabled route, compiled; build a new table whenever the route set changes."""

    compiled: tuple[CompiledRoute, ...] = ()

    @classmethod
    def build(cls, routes: Iterable[Route], previous: RouteTable | None = None) -> RouteTable:
        """The table of `routes`; a route unchanged since `previous` keeps its compiled pattern
        (a route change recompiled every owner's regexes, on the event loop they share)."""
        enabled = sorted(
            (route for route in routes if route.enabled),
            key=lambda route: (-route.priority, route.route_id),
        )
        kept = {each.route.route_id: each for each in previous.compiled} if previous else {}

        def compiled(route: Route) -> CompiledRoute:
            earlier = kept.get(route.route_id)
            return (
                earlier
                if earlier is not None and earlier.route == route
                else CompiledRoute.of(route)
            )

        return cls(tuple(compiled(route) for route in enabled))

    def for_proxy(self, proxy: ProxyTarget) -> ProxyRoutes:
        """The routes that apply to `proxy`; compute it once per table and proxy configuration."""
        selection = RouteSelection.of(proxy)
        return ProxyRoutes(tuple(each for each in self.compiled if selection.selects(each.route)))
