"""Creating a Docker service: the name, its ports, its container, in an order that undoes itself.

The record is stored first: it claims the name (across every kind of service) before the engine
does anything. Then the host ports are allocated (one Lua script each), then the image is built
if asked and the container created and started. When a later step fails, the earlier ones are
undone (the container removed, the record and its ports deleted in one transaction), so a
failed create leaves neither a container nor a half-written service behind.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import trio
from quart import current_app

from oauthproxy.api.errors import ApiError
from oauthproxy.api.ownership import (
    Json,
    as_json,
    check_unclaimed_by_routes,
    owner_serialized,
    storage,
    tenant_owning,
    tenant_quota_slot,
)
from oauthproxy.api.state import app_state
from oauthproxy.errors import Conflict, GatewayError, NotFound
from oauthproxy.models.docker import DockerServiceCreate, PortRequest
from oauthproxy.models.services import DockerService, PortAllocation, PortConfig
from oauthproxy.services import ports as port_rules
from oauthproxy.services.docker import (
    MANAGED_LABEL,
    OWNER_LABEL,
    SERVICE_LABEL,
    ContainerSpec,
    DockerEngine,
    EngineError,
    EngineUnavailable,
    PortMapping,
)
from oauthproxy.services.events import record_one
from oauthproxy.services.owner_networks import OwnerNetworks, gateway_container
from oauthproxy.tenancy.quotas import Quota

log = logging.getLogger(__name__)

UNDO_TIMEOUT_SECONDS = 30.0


def engine() -> DockerEngine:
    docker = app_state(current_app).docker
    assert docker is not None, "create_app always makes one"
    return docker


def owner_networks() -> OwnerNetworks:
    settings = app_state(current_app).settings
    return OwnerNetworks(engine(), gateway_container(settings.gateway_container))


async def owner_network_of(service: DockerService) -> str | None:
    """The network of the service's owner (made if need be, the gateway joined to it), where
    its container goes; None for the admin's services, which go where they ask, as before.
    It is never removed between this and the container's create: `release_owner_network`
    removes it, under the owner's lock, only when the owner has no service record, and the
    service's record was stored before this (under that lock, `reserve_service`)."""
    owner = await tenant_owning(service.owner_token_hash)
    if owner is None:
        return None
    return await owner_networks().join(owner)


async def release_owner_network(owner_hash: str | None) -> list[str]:
    """Remove the owner's network once no service of the owner is left (the caller holds the
    owner's lock); best effort, never failing the request: the names of those removed."""
    if owner_hash is None or await storage().docker_services.owned_by(owner_hash):
        return []
    return await owner_networks().release(owner_hash)


async def release_forgotten_networks() -> list[str]:
    """Remove the owner networks whose owner has no Docker service left (the engine was away
    when the last one went, say): the names of those removed."""
    owning = {service.owner_token_hash for service in await storage().docker_services.all()}
    networks = await engine().networks({MANAGED_LABEL: "true"})
    owners = {network.labels.get(OWNER_LABEL) for network in networks}
    removed = []
    for owner in sorted(o for o in owners if o and o not in owning):
        async with owner_serialized(owner):
            removed += await release_owner_network(owner)
    return removed


async def reserve_service(data: DockerServiceCreate, owner: dict[str, str]) -> DockerService:
    """Check the request and store the record, claiming the name (and, for an owner, a quota
    slot: the caller holds the owner's lock for this step only, never during a build)."""
    await engine().version()  # 503 naming DOCKER_HOST before anything is written
    for index, port in enumerate(data.port_configs):
        if port.host is not None:
            port_rules.check_port(port.host, field=f"port_configs.{index}.host")
    await _no_container_in_another_case(data.service_name)
    await check_unclaimed_by_routes("service", data.service_name, "service_name")
    image = data.image or f"oauthproxy-{data.service_name.lower()}:latest"
    fields = data.model_dump(exclude={"auto_proxy", "start", "port_configs"})
    service = DockerService(**{**fields, "image": image}, **owner)
    await storage().docker_services.create(service)
    return service


async def _no_container_in_another_case(name: str) -> None:
    """409 when a service's container, made before names had to be lower case, has `name` in
    another case: a network's resolver would answer `name` with both containers."""
    for container in await engine().managed():
        if container.name != name and container.name.lower() == name:
            raise Conflict(
                "service_name",
                f"the service {container.name!r} has this name in another case, and DNS does "
                "not tell them apart: choose another service_name",
            )


async def create_service(data: DockerServiceCreate, service: DockerService) -> DockerService:
    """Build (if asked), allocate the ports, create and start the container of a reserved
    service; undo everything, the record included, when a step fails."""
    docker = engine()
    image = service.image or ""
    try:
        if data.dockerfile_path is not None:
            await docker.build(Path(data.dockerfile_path), image)
        internal_port = data.internal_port or next(iter(await docker.exposed_ports(image)), None)
        allocated = [await allocate(service, port) for port in _wanted_ports(data, internal_port)]
        service = service.model_copy(update={"internal_port": internal_port})
        await storage().docker_services.put(service)
        network = await owner_network_of(service)
        await docker.create(container_spec(service, allocated, owner_network=network))
        if data.start:
            await docker.start(service.service_name)
        status = await record_one(docker, storage(), service.service_name)
        service = service.model_copy(update={"status": status})
    except BaseException:
        with trio.CancelScope(shield=True), trio.move_on_after(UNDO_TIMEOUT_SECONDS):
            await _undo(docker, service)
        raise
    return service


async def _undo(docker: DockerEngine, service: DockerService) -> None:
    # Unreachable: nothing was created there; `POST /services/cleanup` removes a late one.
    with contextlib.suppress(EngineUnavailable):
        await docker.remove(service.service_name)
    await storage().docker_services.delete(service)
    try:
        owner = await tenant_owning(service.owner_token_hash)
        if owner is not None:
            async with owner_serialized(owner):
                await release_owner_network(owner)
    except (ApiError, GatewayError) as error:  # (the owner's lock is busy; Redis is away)
        log.warning(
            "service %s: its owner's network left in place: %s", service.service_name, error
        )


def _wanted_ports(data: DockerServiceCreate, internal_port: int | None) -> list[PortRequest]:
    """The ports asked for; with `expose_ports` and none asked, one for the internal port."""
    if data.port_configs or not data.expose_ports or internal_port is None:
        return list(data.port_configs)
    return [PortRequest(name="http", container=internal_port, bind=data.bind_address)]


async def allocate(service: DockerService, port: PortRequest) -> PortAllocation:
    """Claim `port.host` (checked) or the first free exposed port, for `service`, within its
    owner's TOKEN_MAX_PORTS (the exposed range is shared by every owner; counted and claimed
    under the owner's lock, so concurrent requests cannot pass the count together)."""
    if port.host is not None:
        port_rules.check_port(port.host, field="host")
    allocation = PortAllocation(
        service_name=service.service_name,
        port_name=port.name,
        host_port=port.host or port_rules.EXPOSED.start,
        container_port=port.container,
        bind_address=port.bind,
        protocol=port.protocol,
        source_token_hash=port_rules.token_hash(port.source_token) if port.source_token else None,
        require_token=port.source_token is not None,
        owner_token_hash=service.owner_token_hash,
        description=port.description,
    )
    async with tenant_quota_slot(Quota.PORTS, await tenant_owning(service.owner_token_hash)):
        return await storage().ports.allocate(
            allocation,
            requested=port.host,
            restricted=port_rules.RESTRICTED,
            ranges=[port_rules.EXPOSED],
        )


def port_config(allocation: PortAllocation) -> PortConfig:
    """The service's view of a port: never its source token, only whether it grants one."""
    return PortConfig(
        name=allocation.port_name,
        host=allocation.host_port,
        container=allocation.container_port,
        bind=allocation.bind_address,
        protocol=allocation.protocol,
        require_token=allocation.require_token,
    )


def container_spec(
    service: DockerService, ports: list[PortAllocation], owner_network: str | None = None
) -> ContainerSpec:
    """The container of `service`: its limits, its labels plus ours, its published ports (none
    on the host network, where the container's own ports are the host's), its networks: its
    owner's `owner_network` first (an owner's service is on no other unless it asked for one
    OWNER_DOCKER_NETWORKS lists), then those it asked for."""
    labels = {
        **service.labels,
        MANAGED_LABEL: "true",
        SERVICE_LABEL: service.service_name,
        OWNER_LABEL: service.owner_token_hash or "admin",
    }
    host_network = "host" in service.networks
    return ContainerSpec(
        name=service.service_name,
        image=service.image or "",
        command=tuple(service.command or ()),
        memory=service.memory_limit,
        cpus=service.cpu_limit,
        environment=dict(service.environment),
        labels=labels,
        networks=tuple(
            dict.fromkeys([*([owner_network] if owner_network else []), *service.networks])
        ),
        ports=()
        if host_network
        else tuple(
            PortMapping(p.host_port, p.container_port, p.bind_address, p.protocol) for p in ports
        ),
    )


async def remove_containers_of(owner_hash: str) -> list[str]:
    """Remove the containers of a deleted token's services (their records went with it); when
    the engine is away they stay until `POST /services/cleanup`."""
    try:
        owned = [c for c in await engine().managed() if c.labels.get(OWNER_LABEL) == owner_hash]
        for container in owned:
            await engine().remove(container.name)
    except EngineUnavailable as error:
        log.warning("containers of a deleted token left for service-cleanup: %s", error)
        return []
    await owner_networks().release(owner_hash)
    return [container.name for container in owned]


async def listed_with_status(services: list[DockerService]) -> list[Json]:
    """The services as JSON, each with its ports and its container's status: one engine call
    for all; `unknown` for each while the engine cannot be reached (a list still answers)."""
    ports: dict[str, list[PortConfig]] = {}
    for port in await storage().ports.all():
        ports.setdefault(port.service_name, []).append(port_config(port))
    unknown = "missing"
    try:
        states = {state.name: state.status for state in await engine().managed()}
    except (EngineUnavailable, EngineError):
        states, unknown = {}, "unknown"
    rows = []
    for service in sorted(services, key=lambda s: s.service_name):
        held = ports.get(service.service_name, [])
        body = as_json(service.model_copy(update={"port_configs": held}))
        rows.append({**body, "status": states.get(service.service_name, unknown)})
    return rows


async def with_status(service: DockerService) -> Json:
    """The service as JSON, with the ports it holds (`service:ports:{name}` is their truth) and
    its container's status as the engine reports it now."""
    held = [port_config(port) for port in await storage().ports.of_service(service.service_name)]
    body: dict[str, Any] = as_json(service.model_copy(update={"port_configs": held}))
    try:
        state = await engine().state(service.service_name)
        body["status"] = state.status
        body["exit_code"] = state.exit_code
        body["container_networks"] = list(state.networks)
    except NotFound:
        body["status"] = "missing"
    except (EngineUnavailable, EngineError):
        body["status"] = "unknown"
    return body
