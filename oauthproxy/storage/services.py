"""Services: `service:external:{name}`, `docker_service:{name}`, `service:url:{name}`,
`services:external`, and the port keys `port:{port}` and `service:ports:{service}`.

`service:url:{name}` is shared by every kind of service, so a name is taken by whichever kind
registered it first; `api` always belongs to the internal service, the gateway's admin API.
"""

from __future__ import annotations

from collections.abc import Callable

from oauthproxy.errors import Conflict, NotFound
from oauthproxy.models.events import ALL_HOSTS, EventType
from oauthproxy.models.services import (
    DockerService,
    ExternalService,
    InternalService,
    PortAllocation,
)
from oauthproxy.storage import keys
from oauthproxy.storage.base import (
    Pipeline,
    Redis,
    atomically,
    dump,
    load_many,
    translate_errors,
)
from oauthproxy.storage.editing import EditableRepository, anyone
from oauthproxy.storage.events import queue_event

API_SERVICE = "api"
"""The internal service: the gateway's own admin API."""

ServiceCheck = Callable[[ExternalService], object]
"""Raises when the caller may not touch this service."""


def _queue_changed(pipe: Pipeline, name: str) -> None:
    queue_event(pipe, EventType.SERVICES_CHANGED, ALL_HOSTS, service_name=name)


@translate_errors
class ExternalServiceRepository(EditableRepository[ExternalService]):
    model = ExternalService
    prefix = keys.service_external("")
    kind = "service"

    async def all(self) -> list[ExternalService]:
        names = sorted(await self._redis.smembers(keys.SERVICES_EXTERNAL))
        found = [keys.service_external(name) for name in names]
        return await load_many(self._redis, ExternalService, found)

    async def create(self, service: ExternalService) -> None:
        name = service.service_name
        if name == API_SERVICE:
            raise Conflict("service_name", f"{name!r} is reserved for the gateway's admin API")

        async def write(pipe: Pipeline) -> None:
            if await self._redis.exists([keys.service_url(name)]):
                raise Conflict("service_name", f"a service named {name!r} already exists")
            pipe.set(keys.service_external(name), dump(service))
            pipe.set(keys.service_url(name), str(service.target_url))
            pipe.sadd(keys.SERVICES_EXTERNAL, [name])
            _queue_changed(pipe, name)

        await atomically(self._redis, [keys.service_url(name)], write)

    async def modify(
        self, name: str, change: Callable[[ExternalService], ExternalService]
    ) -> ExternalService:
        """Replace the service with `change(current)` (its URL too) and queue `services_changed`,
        atomically. `change` may raise to refuse; `NotFound` when there is no such service."""

        async def write(pipe: Pipeline, current: ExternalService) -> ExternalService:
            updated = change(current)
            pipe.set(keys.service_external(name), dump(updated))
            pipe.set(keys.service_url(name), str(updated.target_url))
            _queue_changed(pipe, name)
            return updated

        return await self._edit(name, write)

    async def update(self, service: ExternalService) -> None:
        """Store `service` over its record if that still exists (never re-creating it)."""
        await self.modify(service.service_name, lambda _current: service)

    async def delete(self, name: str, *, check: ServiceCheck = anyone) -> ExternalService:
        """Delete the service, its URL and its set entry, and queue `services_changed`."""

        async def remove(pipe: Pipeline, current: ExternalService) -> ExternalService:
            check(current)
            self.queue_delete(pipe, current)
            return current

        return await self._edit(name, remove)

    @staticmethod
    def queue_delete(pipe: Pipeline, service: ExternalService) -> None:
        name = service.service_name
        pipe.delete([keys.service_external(name), keys.service_url(name)])
        pipe.srem(keys.SERVICES_EXTERNAL, [name])
        _queue_changed(pipe, name)

    @staticmethod
    def watched_keys(service: ExternalService) -> list[str]:
        return [keys.service_external(service.service_name)]


def reachable_url(bound_url: str) -> str:
    """A URL to reach a server bound to `bound_url`: a wildcard address becomes loopback."""
    return bound_url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")


@translate_errors
class InternalServiceRepository:
    """`service:url:api`: where the gateway's own admin API listens."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def register_api(self, bound_url: str) -> None:
        """Record the admin API's URL (called once it listens)."""
        await self._redis.set(keys.service_url(API_SERVICE), reachable_url(bound_url))

    async def all(self) -> list[InternalService]:
        url = await self._redis.get(keys.service_url(API_SERVICE))
        if url is None:
            return []
        description = "The gateway's admin API"
        return [InternalService(service_name=API_SERVICE, target_url=url, description=description)]


@translate_errors
class DockerServiceRepository(EditableRepository[DockerService]):
    model = DockerService
    prefix = keys.docker_service("")
    kind = "service"

    async def create(self, service: DockerService) -> None:
        """Store a new service and its URL; `Conflict` when any kind of service has the name."""
        name = service.service_name
        if name == API_SERVICE:
            raise Conflict("service_name", f"{name!r} is reserved for the gateway's admin API")
        async with (
            self._redis.pipeline(transaction=True) as pipe,
            pipe.watch(keys.service_url(name)),
        ):
            if await self._redis.exists([keys.service_url(name)]):
                raise Conflict("service_name", f"a service named {name!r} already exists")
            pipe.set(keys.docker_service(name), dump(service))
            pipe.set(keys.service_url(name), docker_service_url(service))
            _queue_changed(pipe, name)

    async def put(self, service: DockerService) -> None:
        """Store `service` over its record (its URL too)."""
        name = service.service_name
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.docker_service(name), dump(service))
            pipe.set(keys.service_url(name), docker_service_url(service))
            _queue_changed(pipe, name)

    async def set_status(self, name: str, status: str) -> bool:
        """Record the container's status as last seen; queue `services_changed` (instances
        answer 503 for a service that is down) only when it changed. False: unchanged or gone."""

        async def write(pipe: Pipeline, current: DockerService) -> bool:
            if current.status == status:
                return False
            pipe.set(keys.docker_service(name), dump(current.model_copy(update={"status": status})))
            _queue_changed(pipe, name)
            return True

        try:
            return await self._edit(name, write)
        except NotFound:
            return False

    async def down(self) -> dict[str, str]:
        """The URLs of the services whose container is known not to run: URL → name."""
        return {
            docker_service_url(service): service.service_name
            for service in await self.all()
            if service.status is not None and service.status != "running"
        }

    async def delete(self, service: DockerService) -> None:
        """Delete the service, its URL and every port it holds, in one transaction."""
        name = service.service_name
        async with (
            self._redis.pipeline(transaction=True) as pipe,
            pipe.watch(keys.service_ports(name)),
        ):
            await self.queue_delete(pipe, service)
            _queue_changed(pipe, name)

    async def queue_delete(self, pipe: Pipeline, service: DockerService) -> None:
        """Delete the service, its URL and the port allocations it holds."""
        name = service.service_name
        ports = await self._redis.hkeys(keys.service_ports(name))
        allocations = await self._redis.hvals(keys.service_ports(name)) if ports else []
        pipe.delete([keys.docker_service(name), keys.service_url(name), keys.service_ports(name)])
        host_ports = [port for port in map(_host_port, allocations) if port is not None]
        if host_ports:
            pipe.delete([keys.port(port) for port in host_ports])

    @staticmethod
    def watched_keys(service: DockerService) -> list[str]:
        return [keys.docker_service(service.service_name), keys.service_ports(service.service_name)]


def docker_service_url(service: DockerService) -> str:
    """Where the gateway reaches a service: on loopback when it shares the host's network,
    else by its container name on a network the gateway shares with it."""
    port = service.internal_port or 80
    host = "127.0.0.1" if "host" in service.networks else service.service_name
    return f"http://{host}:{port}"


def _host_port(raw: str) -> int | None:
    try:
        return PortAllocation.model_validate_json(raw).host_port
    except ValueError:
        return None
