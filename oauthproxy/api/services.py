"""`/api/v1/services/`: the services routes and proxies can name.

External services are named URLs registered here; the internal service `api` is the gateway's own
admin API; Docker services are listed from their records. A name is unique across all three
(`service:url:{name}`).
"""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_querystring, validate_request

from oauthproxy.api.auth import requires_token
from oauthproxy.api.ownership import Json, as_json, ownership, patched, require_owner, storage
from oauthproxy.errors import NotFound
from oauthproxy.models.services import (
    DockerService,
    ExternalService,
    ExternalServiceCreate,
    ExternalServiceUpdate,
    InternalService,
    ServiceQuery,
)

services = Blueprint("services", __name__, url_prefix="/api/v1/services")

AnyService = InternalService | ExternalService | DockerService


def _owned(service: ExternalService) -> ExternalService:
    name = service.service_name
    require_owner(service.owner_token_hash, field="service_name", what=f"service {name!r}")
    return service


@services.get("/")
@requires_token()
@document_response(list[DockerService])
async def list_docker_services() -> list[Json]:
    """The Docker services."""
    found = await storage().docker_services.all()
    return [as_json(service) for service in sorted(found, key=lambda s: s.service_name)]


@services.get("/unified")
@requires_token()
@validate_querystring(ServiceQuery)
@document_response(list[AnyService])
async def list_all_services(query_args: ServiceQuery) -> list[Json]:
    """Every service, internal, external and Docker; `?type=` keeps one kind."""
    internal = await storage().internal_services.all()
    external = await storage().external_services.all()
    docker = await storage().docker_services.all()
    found: list[AnyService] = [*internal, *external, *sorted(docker, key=lambda s: s.service_name)]
    wanted = query_args.type
    return [as_json(s) for s in found if wanted is None or s.service_type == wanted]


@services.post("/external")
@requires_token()
@validate_request(ExternalServiceCreate)
@document_response(ExternalService, 201)
async def register_external_service(data: ExternalServiceCreate) -> tuple[Json, int]:
    """Register a named external URL, owned by the calling token."""
    service = data.service(**ownership())
    await storage().external_services.create(service)
    return as_json(service), 201


@services.get("/external")
@requires_token()
@document_response(list[ExternalService])
async def list_external_services() -> list[Json]:
    """The external services, by name."""
    return [as_json(service) for service in await storage().external_services.all()]


@services.get("/external/<name>")
@requires_token()
@document_response(ExternalService)
async def get_external_service(name: str) -> Json:
    """One external service."""
    service = await storage().external_services.get(name)
    if service is None:
        raise NotFound("service", name)
    return as_json(service)


@services.put("/external/<name>")
@requires_token()
@validate_request(ExternalServiceUpdate)
@document_response(ExternalService)
async def update_external_service(name: str, data: ExternalServiceUpdate) -> Json:
    """Change the fields given (owner or admin)."""
    changes = data.model_dump(exclude_unset=True)
    updated = await storage().external_services.modify(
        name, lambda service: patched(_owned(service), changes)
    )
    return as_json(updated)


@services.delete("/external/<name>")
@requires_token()
@document_response(ExternalService)
async def delete_external_service(name: str) -> Json:
    """Unregister an external service (owner or admin)."""
    return as_json(await storage().external_services.delete(name, check=_owned))
