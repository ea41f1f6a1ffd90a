"""Resource indicators (RFC 8707) as MCP_RESOURCE_INDICATORS_ENABLED and
MCP_RESOURCE_VALIDATION_STRICT say:

- disabled: the `resource` parameter is ignored at every endpoint and the metadata says
  `resource_indicators_supported: false`; tokens are for the issuer, as when no resource is named;
- strict (the default): an authorization request may only name a protected resource this gateway
  knows: the origin of a configured proxy (any scheme, any port: the proxy is known by its
  hostname), a path on it, or a registered resource (`resource:{uri}`) or a path under one. Anything
  else is `invalid_target`;
- not strict: any absolute URI without a fragment.

The token endpoint's `resource` only narrows what was authorized, so it needs no such check.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from oauthproxy.oauth.errors import OAuthError
from oauthproxy.oauth.parameters import absolute_resource, canonical_resource, resources
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage


def named(settings: Settings, values: Sequence[str]) -> list[str]:
    """The resources a request names (none when indicators are disabled); invalid_target for a
    value that is not a URI the settings accept."""
    if not settings.mcp_resource_indicators_enabled:
        return []
    strict = settings.mcp_resource_validation_strict
    return resources(
        values,
        limit=settings.mcp_max_resources_per_token,
        parse=canonical_resource if strict else absolute_resource,
    )


def within_resource(uri: str, resource: str) -> bool:
    """Whether `uri` is the registered `resource` (the admin's), or a URI under it."""
    return uri == resource or uri.startswith(resource.rstrip("/") + "/")


async def check_known(storage: Storage, settings: Settings, uris: Sequence[str]) -> None:
    """invalid_target naming the resources a strict gateway does not protect."""
    if not settings.mcp_resource_validation_strict or not uris:
        return
    unknown = []
    registered: list[str] | None = None
    for uri in uris:
        hostname = urlsplit(uri).hostname or ""
        if await storage.proxies.get(hostname) is not None:
            continue
        if registered is None:
            registered = [resource.uri for resource in await storage.resources.all()]
        if not any(within_resource(uri, resource) for resource in registered):
            unknown.append(uri)
    if unknown:
        raise OAuthError(
            "invalid_target",
            f"not a protected resource of this server: {' '.join(unknown)}",
        )
