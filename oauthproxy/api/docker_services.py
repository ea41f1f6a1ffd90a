"""`/api/v1/services/{name}`: Docker services — create, show, change, start, stop, restart,
logs, stats, a proxy for one, delete, and the cleanup of containers no record owns.

An owner token manages only its own services (another owner's reads as 404) and its creations
count against TOKEN_MAX_SERVICES; `tenancy.services` says what only the admin may ask of a
container. Every engine call runs in a worker thread (`services.docker`); when the engine at
DOCKER_HOST cannot be reached, these endpoints answer 503 naming it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from quart import Blueprint, Response, current_app
from quart_schema import document_response, validate_querystring, validate_request

from oauthproxy.api import streams
from oauthproxy.api.auth import Rechecked, reauthentication, requires_token
from oauthproxy.api.contract import Answer, answers
from oauthproxy.api.docker_create import (
    create_service,
    engine,
    release_forgotten_networks,
    release_owner_network,
    reserve_service,
    with_status,
)
from oauthproxy.api.docker_recreate import recreate
from oauthproxy.api.errors import ApiError
from oauthproxy.api.ownership import (
    Json,
    as_json,
    caller,
    check_image_registry,
    local_hostnames,
    owner_serialized,
    ownership,
    patched,
    quota_slot,
    resolves,
    service_serialized,
    storage,
    tenant_of,
    tenant_owning,
)
from oauthproxy.api.proxies import create_proxy_target
from oauthproxy.api.state import app_state
from oauthproxy.models.docker import (
    DockerServiceCreate,
    DockerServiceDelete,
    DockerServiceUpdate,
    ServiceLogsQuery,
    ServiceProxyCreate,
)
from oauthproxy.models.errors import ErrorBody
from oauthproxy.models.proxies import ProxyTargetCreate
from oauthproxy.models.services import DockerService
from oauthproxy.services.docker import MANAGED_LABEL, SERVICE_LABEL
from oauthproxy.services.events import record_one
from oauthproxy.services.logs import follow_logs
from oauthproxy.storage import cascades, keys
from oauthproxy.storage.services import docker_service_url
from oauthproxy.tenancy.caller import Refused
from oauthproxy.tenancy.quotas import Quota
from oauthproxy.tenancy.records import (
    changeable,
    check_unreferenced,
    readable,
    routes_naming_proxy,
    routes_naming_service,
)
from oauthproxy.tenancy.services import (
    DockerAllowance,
    check_docker_resources,
    check_docker_service,
    check_image,
    check_labels,
)

docker_services = Blueprint("docker_services", __name__, url_prefix="/api/v1/services")

LOG_FOLLOWS = "service_logs"
DOCKER_LOG_FOLLOWS_PER_TOKEN = 4
"""Followed service logs (`logs?follow=true`) one token may hold open at once: each polls the
engine twice a second, on the worker threads every engine call and name lookup shares."""


async def _service(name: str) -> DockerService:
    found = await storage().docker_services.get(name)
    return readable(caller(), found, "service", name)


@docker_services.post("/")
@requires_token()
@validate_request(DockerServiceCreate)
@document_response(DockerService, 201)
async def create_docker_service(data: DockerServiceCreate) -> tuple[Json, int]:
    """Create (and by default start) a container from `image` or `dockerfile_path`, owned by the
    calling token; with `auto_proxy`, also the proxy `{name}.{BASE_DOMAIN}`."""
    owner_networks = app_state(current_app).settings.owner_docker_networks
    check_docker_service(caller(), data, owner_networks, await _names_taken(data.service_name))
    await check_image_registry(data.image)
    async with quota_slot(Quota.SERVICES):
        await _check_resources(None, data.memory_limit, data.cpu_limit)
        reserved = await reserve_service(data, ownership())
    service = await create_service(data, reserved)
    if data.auto_proxy:
        await _proxy_for(service, ServiceProxyCreate())
    return await with_status(service), 201


async def _names_taken(name: str) -> frozenset[str]:
    """The names an owner's service may not take: those the gateway's host resolves itself
    (`local_hostnames`), and `name` when the gateway resolves it now. The gateway's container
    joins every owner network, where Docker's DNS answers a service's name: a service named
    like a host the gateway reaches by a bare name (compose's `redis`, which REDIS_URL names)
    took the gateway's own lookups, its Redis password with them. (A name a service already
    has resolves too: that create is a 409, as before.)"""
    names = await local_hostnames()
    if caller().is_admin or await storage().redis.exists([keys.service_url(name)]):
        return names
    return names | {name} if await resolves(name) else names


async def _check_resources(name: str | None, memory: str, cpus: float) -> None:
    """TOKEN_MAX_DOCKER_MEMORY and TOKEN_MAX_DOCKER_CPUS for the caller's service `name` (None:
    a new one) with these limits; the caller holds its owner lock."""
    who = caller()
    if who.is_admin:
        return
    settings = app_state(current_app).settings
    allowance = DockerAllowance(settings.token_max_docker_memory, settings.token_max_docker_cpus)
    owned = await storage().docker_services.owned_by(who.token_hash)
    others = [service for service in owned if service.service_name != name]
    check_docker_resources(who, allowance, others, memory, cpus)


@docker_services.post("/cleanup")
@requires_token(admin=True)
async def cleanup_services() -> Json:
    """Remove our containers that no service record owns, the records of services whose
    container is gone (with their ports), and owner networks whose owner has no service left.
    Admin only."""
    records = {s.service_name: s for s in await storage().docker_services.all()}
    containers = await engine().managed()
    present = {c.labels.get(SERVICE_LABEL, c.name) for c in containers}
    removed = []
    for container in containers:
        if container.labels.get(MANAGED_LABEL) and container.name not in records:
            await engine().remove(container.name)
            removed.append(container.name)
    forgotten = [name for name in records if name not in present]
    for name in forgotten:
        await storage().docker_services.delete(records[name])
    networks = await release_forgotten_networks()
    return {
        "removed_containers": removed,
        "removed_records": forgotten,
        "removed_networks": networks,
    }


@docker_services.get("/<name>")
@requires_token()
@document_response(DockerService)
async def get_docker_service(name: str) -> Json:
    """One Docker service, with its container's status."""
    return await with_status(await _service(name))


@docker_services.put("/<name>")
@requires_token()
@validate_request(DockerServiceUpdate)
@document_response(DockerService)
async def update_docker_service(name: str, data: DockerServiceUpdate) -> Json:
    """Change memory and CPU limits in place; a new image, environment, command or labels
    recreate the container (with the ports the service holds now)."""
    service = changeable(caller(), await _service(name), "service", name)
    changes = data.model_dump(exclude_none=True)
    if not changes:
        return await with_status(service)
    check_labels(data.labels or {})
    check_image(caller(), data.image)
    await check_image_registry(data.image)
    limits = data.memory_limit is not None or data.cpu_limit is not None
    # (new limits are checked against the owner's other services, under the owner's lock)
    owner = tenant_of(caller()) if limits else None
    async with owner_serialized(owner), service_serialized(name):
        previous = await _service(name)
        service = patched(previous, changes)
        if limits:
            await _check_resources(name, service.memory_limit, service.cpu_limit)
        if data.recreates():
            await recreate(service, previous=previous)
        else:
            await engine().update(name, memory=data.memory_limit, cpus=data.cpu_limit)
        await storage().docker_services.put(service)
        await record_one(engine(), storage(), name)
    return await with_status(await _service(name))


@docker_services.delete("/<name>")
@requires_token()
@validate_querystring(DockerServiceDelete)
@document_response(DockerService)
async def delete_docker_service(name: str, query_args: DockerServiceDelete) -> Json:
    """Remove the container, the record and its ports; `?delete_proxy=true` also deletes the
    caller's proxies that target it. Refused (409) while routes of its owner name it, and while
    the container runs unless `force` (the default)."""
    service = changeable(caller(), await _service(name), "service", name)
    owner = await tenant_owning(service.owner_token_hash)
    proxies = await _proxies_to(service) if query_args.delete_proxy else []
    async with owner_serialized(owner), service_serialized(name):
        if owner is not None:
            routes = await storage().routes.owned_by(owner)
            check_unreferenced("service", name, "service_name", routes_naming_service(routes, name))
            for hostname in proxies:
                naming = routes_naming_proxy(routes, hostname)
                check_unreferenced("proxy", hostname, "delete_proxy", naming)
        if not query_args.force:
            state = await engine().state(name)
            if state.status == "running":
                detail = f"the container of {name} is running: stop it first, or use force=true"
                raise Refused(409, "running", detail, field="force")
        await engine().remove(name)
        await storage().docker_services.delete(service)
        for hostname in proxies:
            await cascades.delete_proxy(storage(), hostname)
        await release_owner_network(owner)
    return {**as_json(service), "status": "deleted", "deleted_proxies": proxies}


async def _proxies_to(service: DockerService) -> list[str]:
    """The caller's proxies whose target is the service."""
    url = docker_service_url(service).rstrip("/")
    who = caller()
    return [
        proxy.hostname
        for proxy in await storage().proxies.all()
        if str(proxy.target_url).rstrip("/") == url and who.owns(proxy.owner_token_hash)
    ]


@docker_services.post("/<name>/start")
@requires_token()
async def start_service(name: str) -> Json:
    return await _changed(name, engine().start)


@docker_services.post("/<name>/stop")
@requires_token()
async def stop_service(name: str) -> Json:
    return await _changed(name, engine().stop)


@docker_services.post("/<name>/restart")
@requires_token()
async def restart_service(name: str) -> Json:
    return await _changed(name, engine().restart)


async def _changed(name: str, change: Callable[[str], Awaitable[None]]) -> Json:
    """Start, stop or restart the caller's service's container, under the service's lock."""
    service = await _service(name)
    async with service_serialized(service.service_name):
        await change(service.service_name)
        await record_one(engine(), storage(), name)
    return await with_status(await _service(name))


@docker_services.get("/<name>/logs")
@answers(
    Answer(
        "429",
        f"The token already follows {DOCKER_LOG_FOLLOWS_PER_TOKEN} service logs",
        model=ErrorBody,
    )
)
@requires_token()
@validate_querystring(ServiceLogsQuery)
async def service_logs(name: str, query_args: ServiceLogsQuery) -> Json | Response:
    """The container's last `lines` lines of output (stdout and stderr); with `follow=true`, a
    text/plain stream of those lines and then every new one, until the client goes away or its
    token can no longer read it: the caller is authenticated again every few seconds
    (RECHECK_SECONDS), and the stream ends once its token is suspended, deleted or given a new
    secret, or its dashboard session ended."""
    service = await _service(name)
    if query_args.follow:
        token_hash, follows = caller().token_hash, streams.held(LOG_FOLLOWS)
        if streams.is_full(follows, token_hash, DOCKER_LOG_FOLLOWS_PER_TOKEN):
            raise ApiError(
                429,
                "too_many_follows",
                f"this token already follows {DOCKER_LOG_FOLLOWS_PER_TOKEN} service logs "
                f"(at most {DOCKER_LOG_FOLLOWS_PER_TOKEN} at once); close one first",
                field="follow",
            )
        allowed = Rechecked(reauthentication())
        lines_of = follow_logs(
            engine(),
            service.service_name,
            lines=query_args.lines,
            timestamps=query_args.timestamps,
            still=allowed.allows,
        )

        async def body() -> AsyncIterator[bytes]:
            """The slot is taken here, where its release is certain; a stream that finds the
            last one taken since the check above ends at once."""
            with streams.slot(follows, token_hash, DOCKER_LOG_FOLLOWS_PER_TOKEN) as taken:
                if not taken:
                    return
                async for line in lines_of:
                    yield (line + "\n").encode()

        return Response(body(), content_type="text/plain; charset=utf-8")
    lines = await engine().logs(
        service.service_name, lines=query_args.lines, timestamps=query_args.timestamps
    )
    return {"service_name": name, "lines": lines}


@docker_services.get("/<name>/stats")
@requires_token()
async def service_stats(name: str) -> Json:
    """CPU, memory, network and block I/O of the container, as the engine measures them now."""
    service = await _service(name)
    stats = await engine().stats(service.service_name)
    return {"service_name": name, **vars(stats)}


@docker_services.post("/<name>/proxy")
@requires_token()
@validate_request(ServiceProxyCreate)
async def create_service_proxy(name: str, data: ServiceProxyCreate) -> tuple[Json, int]:
    """A proxy to the service: `hostname` defaults to `{name}.{BASE_DOMAIN}`."""
    return await _proxy_for(await _service(name), data), 201


async def _proxy_for(service: DockerService, data: ServiceProxyCreate) -> Json:
    base_domain = app_state(current_app).settings.base_domain
    hostname = data.hostname or f"{service.service_name.lower()}.{base_domain}"
    request = ProxyTargetCreate.model_validate(
        {
            "hostname": hostname,
            "target_url": docker_service_url(service),
            "enable_https": data.enable_https,
        }
    )
    body, _status, _headers = await create_proxy_target(request)
    return body
