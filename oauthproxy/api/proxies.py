"""`/api/v1/proxy/targets/`: proxy targets and their auth, resource-metadata and route settings.

Who may see and change which proxy, where it may point and which headers it may set are the
tenant model's rules (`oauthproxy.tenancy`): an owner token sees only its own proxies (another's
reads as 404). Every write publishes its workflow event in the same transaction: `proxy_created`,
`proxy_updated` (any change, sub-resources included) or `proxy_deleted`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from quart import Blueprint
from quart_schema import document_response, validate_querystring, validate_request

from oauthproxy.api import proxy_certificates
from oauthproxy.api.auth import requires_token
from oauthproxy.api.ownership import (
    Json,
    api_hostnames,
    as_json,
    caller,
    check_unclaimed_by_routes,
    check_url_target,
    owner_serialized,
    ownership,
    patched,
    quota_slot,
    reserved_hostnames,
    storage,
    tenant_owning,
)
from oauthproxy.logs import schema
from oauthproxy.models.certificates import Certificate
from oauthproxy.models.proxies import (
    AUTH_FIELDS,
    RESOURCE_FIELDS,
    ROUTE_FIELDS,
    ProxyAuthConfig,
    ProxyDeleted,
    ProxyDeleteQuery,
    ProxyResourceConfig,
    ProxyRouteSettings,
    ProxyTarget,
    ProxyTargetCreate,
    ProxyTargetUpdate,
    reset,
    section,
)
from oauthproxy.oauth.indicators import within_resource
from oauthproxy.proxy.access import audience_host
from oauthproxy.storage import cascades
from oauthproxy.tenancy.caller import forbidden
from oauthproxy.tenancy.headers import check_request_headers, check_response_headers
from oauthproxy.tenancy.quotas import Quota
from oauthproxy.tenancy.records import (
    changeable,
    check_new_proxy,
    check_unreferenced,
    readable,
    routes_naming_proxy,
    visible,
)

proxies = Blueprint("proxies", __name__, url_prefix="/api/v1/proxy/targets")

Change = Callable[[ProxyTarget], ProxyTarget]


def _hostname(raw: str) -> str:
    """Hostnames are stored lower-case without a trailing dot; look them up the same way."""
    return raw.lower().rstrip(".")


def _owned(target: ProxyTarget) -> ProxyTarget:
    return changeable(caller(), target, "proxy", target.hostname)


def _headers_checked(target: ProxyTarget) -> ProxyTarget:
    """`target` when its configured headers are none the gateway owns (422 naming one)."""
    check_request_headers(target.custom_headers, auth_header_prefix=target.auth_header_prefix)
    check_response_headers(target.custom_response_headers)
    return target


async def _proxy(hostname: str) -> ProxyTarget:
    found = await storage().proxies.get(_hostname(hostname))
    return readable(caller(), found, "proxy", hostname)


async def _change(hostname: str, change: Change) -> ProxyTarget:
    """Apply `change` to the proxy, as its owner or the admin; publishes `proxy_updated`. The
    proxy as it would be stored is checked whole, so an auth prefix change cannot turn a
    configured header into an identity header."""
    return await storage().proxies.modify(
        _hostname(hostname), lambda t: _headers_checked(change(_owned(t)))
    )


async def _show(hostname: str, fields: tuple[str, ...]) -> Json:
    return section(await _proxy(hostname), fields)


async def _rewrite(hostname: str, change: Change, fields: tuple[str, ...]) -> Json:
    """Change the proxy and answer with the section `fields` as it is now."""
    return section(await _change(hostname, change), fields)


def _merging(changes: dict[str, Any]) -> Change:
    return lambda target: patched(target, changes)


def _resetting(fields: tuple[str, ...]) -> Change:
    return lambda target: reset(target, fields)


@proxies.post("/")
@requires_token()
@validate_request(ProxyTargetCreate)
@document_response(ProxyTarget, 201)
async def create_proxy(data: ProxyTargetCreate) -> tuple[Json, int, dict[str, str]]:
    """Create a proxy target owned by the calling token; publishes `proxy_created`.

    With HTTPS and no `cert_name`, a certificate covering the hostname is reused, or one is
    ordered (see the `X-Certificate-Action` and `X-Certificate-Detail` response headers)."""
    return await create_proxy_target(data)


async def create_proxy_target(data: ProxyTargetCreate) -> tuple[Json, int, dict[str, str]]:
    """What `POST /proxy/targets/` does; also the proxy of a Docker service."""
    requested = _headers_checked(data.target(**ownership()))
    check_new_proxy(caller(), requested.hostname, reserved_hostnames(), api_hostnames())
    await _not_a_registered_resources_host(requested.hostname)
    await check_unclaimed_by_routes("proxy", requested.hostname, "hostname")
    await check_url_target("target_url", requested.target_url)
    await proxy_certificates.check_named(requested)
    certificate = await proxy_certificates.plan(requested, data)
    target = certificate.applied_to(requested)
    async with quota_slot(Quota.PROXIES):
        await storage().proxies.create(target)
    # The hostname's response times so far are an earlier proxy's (another owner's, perhaps):
    # its percentiles start again, as its visitors do from the hour it was made (`_hours_of`).
    await storage().log_redis.delete([schema.durations(target.hostname)])
    certificate = await proxy_certificates.carry_out(certificate, target, staging=data.staging)
    return as_json(target), 201, certificate.headers()


@proxies.get("/")
@requires_token()
@document_response(list[ProxyTarget])
async def list_proxies() -> list[Json]:
    """The proxy targets the caller may see (all for the admin), by hostname."""
    found = visible(caller(), await storage().proxies.all())
    return [as_json(target) for target in sorted(found, key=lambda t: t.hostname)]


@proxies.get("/<hostname>")
@requires_token()
@document_response(ProxyTarget)
async def get_proxy(hostname: str) -> Json:
    """One proxy target."""
    return as_json(await _proxy(hostname))


@proxies.put("/<hostname>")
@requires_token()
@validate_request(ProxyTargetUpdate)
@document_response(ProxyTarget)
async def update_proxy(hostname: str, data: ProxyTargetUpdate) -> Json:
    """Change the fields given (owner or admin); publishes `proxy_updated`."""
    changes = data.model_dump(exclude_unset=True)
    await _proxy(hostname)  # another owner's proxy is missing: not a target, nor a name, to probe
    if changes.get("target_url") is not None:
        await check_url_target("target_url", changes["target_url"])
    await proxy_certificates.check_named_change(_hostname(hostname), changes)
    return as_json(await _change(hostname, _merging(changes)))


@proxies.delete("/<hostname>")
@requires_token()
@validate_querystring(ProxyDeleteQuery)
@document_response(ProxyDeleted)
async def delete_proxy(hostname: str, query_args: ProxyDeleteQuery) -> Json:
    """Delete a proxy (owner or admin), with `?delete_certificate=true` its certificate too if
    the caller owns that; publishes `proxy_deleted`. Refused (409) while routes of the proxy's
    owner still name it."""

    def owned_certificate(certificate: Certificate) -> bool:
        return caller().owns(certificate.owner_token_hash)

    name = _hostname(hostname)
    owner = await tenant_owning((await _proxy(name)).owner_token_hash)
    async with owner_serialized(owner):
        if owner is not None:
            naming = routes_naming_proxy(await storage().routes.owned_by(owner), name)
            check_unreferenced("proxy", name, "hostname", naming)
        deleted = await cascades.delete_proxy(
            storage(),
            name,
            check=_owned,
            with_certificate=owned_certificate if query_args.delete_certificate else None,
        )
    return as_json(deleted)


@proxies.get("/<hostname>/auth")
@requires_token()
async def get_auth(hostname: str) -> Json:
    """The proxy's auth settings."""
    return await _show(hostname, AUTH_FIELDS)


@proxies.post("/<hostname>/auth")
@requires_token()
@validate_request(ProxyAuthConfig)
async def configure_auth(hostname: str, data: ProxyAuthConfig) -> Json:
    """Enable auth on the proxy and set the auth fields given."""
    changes = {"auth_enabled": True, **data.model_dump(exclude_unset=True)}
    await _check_audiences(data.auth_allowed_audiences or [])
    return await _rewrite(hostname, _merging(changes), AUTH_FIELDS)


async def _check_audiences(audiences: list[str]) -> None:
    """Refuse (403) an owner token's extra audience that names another owner's proxy or the
    gateway's own hostnames: tokens issued for that resource would pass this proxy, and their
    Authorization header reach this owner's backend (a token it could then use there)."""
    who = caller()
    if who.is_admin:
        return
    reserved = reserved_hostnames()
    resources = [resource.uri for resource in await storage().resources.all()]
    for audience in audiences:
        host = audience_host(audience)
        if host in reserved:
            raise forbidden(
                f"auth_allowed_audiences: {audience} is the gateway's own",
                field="auth_allowed_audiences",
            )
        target = await storage().proxies.get(host)
        registered = any(within_resource(audience, resource) for resource in resources)
        if registered or (target is not None and not who.owns(target.owner_token_hash)):
            raise forbidden(
                f"auth_allowed_audiences: {audience} is another owner's resource",
                field="auth_allowed_audiences",
            )


async def _not_a_registered_resources_host(hostname: str) -> None:
    """403 for an owner token's proxy on the host of a protected resource the admin registered:
    who may log in for that resource was then the proxy's policy (`oauth/login.host_policies`),
    the owner's, and an owner open to every user opened the admin's resource to them too."""
    if caller().is_admin:
        return
    for resource in await storage().resources.all():
        if (urlsplit(resource.uri).hostname or "").lower() == hostname:
            raise forbidden(
                f"{hostname} is the host of a protected resource the admin registered: only "
                "the admin token may proxy it",
                field="hostname",
            )


@proxies.delete("/<hostname>/auth")
@requires_token()
async def remove_auth(hostname: str) -> Json:
    """Disable auth and reset every auth field to its default."""
    return await _rewrite(hostname, _resetting(AUTH_FIELDS), AUTH_FIELDS)


@proxies.get("/<hostname>/mcp")
@requires_token()
async def get_resource_metadata(hostname: str) -> Json:
    """The proxy's protected resource metadata settings (RFC 9728)."""
    return await _show(hostname, RESOURCE_FIELDS)


@proxies.post("/<hostname>/mcp")
@requires_token()
@validate_request(ProxyResourceConfig)
async def configure_resource_metadata(hostname: str, data: ProxyResourceConfig) -> Json:
    """Set the protected resource metadata (`resource_*` or `mcp_*` field names)."""
    return await _rewrite(hostname, data.apply, RESOURCE_FIELDS)


@proxies.delete("/<hostname>/mcp")
@requires_token()
async def remove_resource_metadata(hostname: str) -> Json:
    """Clear the protected resource metadata."""
    return await _rewrite(hostname, _resetting(RESOURCE_FIELDS), RESOURCE_FIELDS)


@proxies.get("/<hostname>/routes")
@requires_token()
async def get_routes(hostname: str) -> Json:
    """Which routes apply to the proxy: `route_mode`, `enabled_routes`, `disabled_routes`."""
    return await _show(hostname, ROUTE_FIELDS)


@proxies.put("/<hostname>/routes")
@requires_token()
@validate_request(ProxyRouteSettings)
async def update_routes(hostname: str, data: ProxyRouteSettings) -> Json:
    """Change the route settings given."""
    return await _rewrite(hostname, _merging(data.model_dump(exclude_unset=True)), ROUTE_FIELDS)
