"""`/api/v1/services/`: the services routes and proxies can name.

External services are named URLs registered here; the internal service `api` is the gateway's own
admin API; Docker services are listed from their records. A name is unique across all three
(`service:url:{name}`).

An owner token sees only its own external and Docker services (another's reads as 404); the
internal service, the admin API, is the admin's to see and to target (`oauthproxy.tenancy`).
"""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_querystring, validate_request

from oauthproxy.api.auth import requires_token
from oauthproxy.api.docker_create import listed_with_status
from oauthproxy.api.ownership import (
    Json,
    as_json,
    caller,
    check_unclaimed_by_routes,
    check_url_target,
    owner_serialized,
    ownership,
    patched,
    quota_slot,
    storage,
    tenant_owning,
)
from oauthproxy.models.services import (
    DockerService,
    ExternalService,
    ExternalServiceCreate,
    ExternalServiceUpdate,
    InternalService,
    ServiceQuery,
    ServiceType,
)
from oauthproxy.tenancy.quotas import Quota
from oauthproxy.tenancy.records import (
    changeable,
    check_unreferenced,
    readable,
    routes_naming_service,
    visible,
)

services = Blueprint("services", __name__, url_prefix="/api/v1/services")

AnyService = InternalService | ExternalService | DockerService


def _owned(service: ExternalService) -> ExternalService:
    return changeable(caller(), service, "service", service.service_name)


async def _external(name: str) -> ExternalService:
    found = await storage().external_services.get(name)
    return readable(caller(), found, "service", name)


@services.get("/")
@requires_token()
@document_response(list[DockerService])
async def list_docker_services() -> list[Json]:
    """The Docker services the caller may see."""
    return await listed_with_status(visible(caller(), await storage().docker_services.all()))


@services.get("/unified")
@requires_token()
@validate_querystring(ServiceQuery)
@document_response(list[AnyService])
async def list_all_services(query_args: ServiceQuery) -> list[Json]:
    """Every service the caller may see, internal (admin only), external and Docker; `?type=`
    keeps one kind."""
    who = caller()
    internal = await storage().internal_services.all() if who.is_admin else []
    external = visible(who, await storage().external_services.all())
    docker = visible(who, await storage().docker_services.all())
    wanted = query_args.type
    found: list[InternalService | ExternalService] = [*internal, *external]
    rows = [{**as_json(s), "status": _status(s)} for s in found]
    if wanted in (None, ServiceType.DOCKER):
        rows += await listed_with_status(docker)
    return [row for row in rows if wanted is None or row["service_type"] == wanted]


def _status(service: InternalService | ExternalService) -> str:
    """An internal service is always active; an external one unless routing to it is off."""
    routed = getattr(service, "routing_enabled", True)
    return "active" if routed else "disabled"


@services.post("/external")
@requires_token()
@validate_request(ExternalServiceCreate)
@document_response(ExternalService, 201)
async def register_external_service(data: ExternalServiceCreate) -> tuple[Json, int]:
    """Register a named external URL, owned by the calling token."""
    service = data.service(**ownership())
    await check_url_target("target_url", service.target_url)
    await check_unclaimed_by_routes("service", service.service_name, "service_name")
    async with quota_slot(Quota.SERVICES):
        await storage().external_services.create(service)
    return as_json(service), 201


@services.get("/external")
@requires_token()
@document_response(list[ExternalService])
async def list_external_services() -> list[Json]:
    """The external services the caller may see, by name."""
    found = visible(caller(), await storage().external_services.all())
    return [as_json(service) for service in found]


@services.get("/external/<name>")
@requires_token()
@document_response(ExternalService)
async def get_external_service(name: str) -> Json:
    """One external service."""
    return as_json(await _external(name))


@services.put("/external/<name>")
@requires_token()
@validate_request(ExternalServiceUpdate)
@document_response(ExternalService)
async def update_external_service(name: str, data: ExternalServiceUpdate) -> Json:
    """Change the fields given (owner or admin)."""
    changes = data.model_dump(exclude_unset=True)
    if changes.get("target_url") is not None:
        await _external(name)  # another owner's service is missing, not a target
        await check_url_target("target_url", changes["target_url"])
    updated = await storage().external_services.modify(
        name, lambda service: patched(_owned(service), changes)
    )
    return as_json(updated)


@services.delete("/external/<name>")
@requires_token()
@document_response(ExternalService)
async def delete_external_service(name: str) -> Json:
    """Unregister an external service (owner or admin); refused (409) while routes of its owner
    still name it."""
    owner = await tenant_owning((await _external(name)).owner_token_hash)
    async with owner_serialized(owner):
        if owner is not None:
            naming = routes_naming_service(await storage().routes.owned_by(owner), name)
            check_unreferenced("service", name, "service_name", naming)
        deleted = await storage().external_services.delete(name, check=_owned)
    return as_json(deleted)
