"""Pure routing for the data plane: which route, if any, takes a request, and where it goes.

`RouteTable.build(routes)` once per change of the route set; `table.for_proxy(proxy)` once per
proxy configuration (cached); `proxy_routes.match(path, method)` on every request. Nothing here
does I/O.
"""

from __future__ import annotations

from oauthproxy.routing.table import ProxyRoutes, RouteTable
from oauthproxy.routing.targets import route_target_url

__all__ = ["ProxyRoutes", "RouteTable", "route_target_url"]
