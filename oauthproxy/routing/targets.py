"""Where a route sends a request: the base URL its target stands for."""

from __future__ import annotations

from collections.abc import Mapping

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.models.routes import Route, TargetType


def route_target_url(
    route: Route, *, services: Mapping[str, str], proxies: Mapping[str, ProxyTarget]
) -> str | None:
    """The base URL of `route`'s target, or None when it names nothing known.

    `services` maps a service name to its base URL (Docker, external and internal services; `api`
    is the gateway's own admin API); `proxies` maps a hostname to its proxy target.
    """
    value = route.target_value
    match route.target_type:
        case TargetType.PORT:
            return f"http://127.0.0.1:{value}"
        case TargetType.SERVICE:
            return services.get(value)
        case TargetType.HOSTNAME:
            proxy = proxies.get(value)
            return None if proxy is None else str(proxy.target_url)
        case TargetType.URL:
            return value
