"""Host ports of Docker services: `/api/v1/services/ports…` and `/api/v1/services/{name}/ports…`.

A port belongs to its service, and so to the service's owner: an owner token adds, changes and
removes only its own services' ports, and another owner's port reads as missing. A port's
`source_token` grants one other token its use (`tenancy.ports`): that token sees the port in the
global list and may target it; it never changes or releases it. Which ports may be held is
`services.ports`' rule (422 naming the problem); allocation is one Lua script in
`storage.ports`, so concurrent requests, on any replica, never get the same port.

Docker cannot publish a port on a running container: adding, removing or re-binding a port of a
service with a container replaces the container under the service's lock, in one step from the
user's view (`docker_recreate`); the answer says so (`republished`).
"""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_querystring, validate_request

from oauthproxy.api.auth import requires_token
from oauthproxy.api.docker_create import allocate
from oauthproxy.api.docker_recreate import with_ports_republished
from oauthproxy.api.ownership import Json, as_json, caller, patched, storage
from oauthproxy.models.docker import PortCheck, PortRequest, PortsQuery, PortUpdate
from oauthproxy.models.services import DockerService, PortAllocation
from oauthproxy.services import ports as port_rules
from oauthproxy.tenancy.ports import port_access, shown_to, usable
from oauthproxy.tenancy.records import changeable, readable

ports = Blueprint("ports", __name__, url_prefix="/api/v1/services")


async def _service(name: str) -> DockerService:
    return readable(caller(), await storage().docker_services.get(name), "service", name)


@ports.get("/ports")
@requires_token()
@validate_querystring(PortsQuery)
async def list_all_ports(query_args: PortsQuery) -> Json:
    """Every allocated port the caller owns or is granted (a granted port without its owner's
    hashes); `?available_only=true` gives the ranges and the next free port instead."""
    if query_args.available_only:
        return await available_ports()
    who = caller()
    found = [as_json(shown_to(who, port)) for port in usable(who, await storage().ports.all())]
    return {"ports": found, "count": len(found)}


@ports.get("/ports/available")
@requires_token()
async def available_ports() -> Json:
    """The spec's ranges, the restricted ports, how many are allocated and the next free one."""
    taken = {port.host_port for port in await storage().ports.all()}
    next_free = next(
        (p for p in port_rules.EXPOSED if p not in taken and p not in port_rules.RESTRICTED), None
    )
    return {**port_rules.PortRanges().as_json(), "allocated": len(taken), "next_free": next_free}


@ports.post("/ports/check")
@requires_token()
@validate_request(PortCheck)
async def check_port(data: PortCheck) -> Json:
    """Whether `port` could be allocated now, and if not, why; for an allocated port, whether
    the caller may use it (`owner`, `granted` by its source token, or `denied`)."""
    problem = port_rules.port_problem(data.port)
    holder = await storage().ports.holder(data.port)
    if problem is None and holder is not None:
        problem = f"port {data.port} is already allocated"
    return {
        "port": data.port,
        "bind_address": data.bind_address,
        "available": problem is None,
        "reason": problem,
        "access": None if holder is None else port_access(caller(), holder),
    }


@ports.get("/<name>/ports")
@requires_token()
@document_response(list[PortAllocation])
async def list_service_ports(name: str) -> list[Json]:
    service = await _service(name)
    return [as_json(port) for port in await storage().ports.of_service(service.service_name)]


@ports.post("/<name>/ports")
@requires_token()
@validate_request(PortRequest)
@document_response(PortAllocation, 201)
async def add_service_port(name: str, data: PortRequest) -> tuple[Json, int]:
    """Allocate a host port for the service: `host` when given (checked), else the first free
    one of the exposed range; a service with a container gets a new one that publishes it."""
    service = changeable(caller(), await _service(name), "service", name)

    async def release(allocation: PortAllocation) -> None:
        await storage().ports.release(allocation.service_name, allocation.port_name)

    added, published = await with_ports_republished(
        service, lambda: allocate(service, data), release
    )
    return _answer(added, published), 201


@ports.put("/<name>/ports/<port_name>")
@requires_token()
@validate_request(PortUpdate)
@document_response(PortAllocation)
async def update_service_port(name: str, port_name: str, data: PortUpdate) -> Json:
    """Change a port's bind address (which republishes it), source token, whether it needs
    one, its description."""
    service = changeable(caller(), await _service(name), "service", name)
    changes = data.model_dump(exclude_none=True, exclude={"source_token", "bind"})
    if data.bind is not None:
        changes["bind_address"] = data.bind
    if data.source_token is not None:
        changes["source_token_hash"] = port_rules.token_hash(data.source_token)
        changes.setdefault("require_token", True)
    current = await storage().ports.get(service.service_name, port_name)
    updated = patched(current, changes)

    async def replace() -> PortAllocation:
        await storage().ports.replace(updated)
        return updated

    async def put_back(_: PortAllocation) -> None:
        await storage().ports.replace(current)

    if updated.bind_address == current.bind_address:
        return _answer(await replace(), published=False)
    _, published = await with_ports_republished(service, replace, put_back)
    return _answer(updated, published)


@ports.delete("/<name>/ports/<port_name>")
@requires_token()
@document_response(PortAllocation)
async def remove_service_port(name: str, port_name: str) -> Json:
    """Release the port (both of its keys go in one step); a service with a container gets a
    new one that no longer publishes it."""
    service = changeable(caller(), await _service(name), "service", name)

    async def release() -> PortAllocation:
        return await storage().ports.release(service.service_name, port_name)

    async def put_back(released: PortAllocation) -> None:
        await storage().ports.allocate(
            released, requested=released.host_port, restricted=frozenset(), ranges=[]
        )

    removed, published = await with_ports_republished(service, release, put_back)
    return _answer(removed, published)


def _answer(port: PortAllocation, published: bool) -> Json:
    """The port, and whether the service's container now publishes the change (it was
    replaced for it, by this request or a concurrent one)."""
    return {**as_json(port), "republished": published}
