"""Services: `service:external:{name}`, `docker_service:{name}`, `service:url:{name}`,
`services:external`, and the port keys `port:{port}` and `service:ports:{service}`."""

from __future__ import annotations

from oauthproxy.errors import Conflict
from oauthproxy.models.services import DockerService, ExternalService, PortAllocation
from oauthproxy.storage import keys
from oauthproxy.storage.base import JsonRepository, Pipeline, dump, load_many, translate_errors


@translate_errors
class ExternalServiceRepository(JsonRepository[ExternalService]):
    model = ExternalService
    prefix = keys.service_external("")

    async def all(self) -> list[ExternalService]:
        names = sorted(await self._redis.smembers(keys.SERVICES_EXTERNAL))
        found = [keys.service_external(name) for name in names]
        return await load_many(self._redis, ExternalService, found)

    async def create(self, service: ExternalService) -> None:
        name = service.service_name
        async with (
            self._redis.pipeline(transaction=True) as pipe,
            pipe.watch(keys.service_url(name)),
        ):
            if await self._redis.exists([keys.service_url(name)]):
                raise Conflict("service_name", f"a service named {name!r} already exists")
            pipe.set(keys.service_external(name), dump(service))
            pipe.set(keys.service_url(name), str(service.target_url))
            pipe.sadd(keys.SERVICES_EXTERNAL, [name])

    @staticmethod
    def queue_delete(pipe: Pipeline, service: ExternalService) -> None:
        name = service.service_name
        pipe.delete([keys.service_external(name), keys.service_url(name)])
        pipe.srem(keys.SERVICES_EXTERNAL, [name])

    @staticmethod
    def watched_keys(service: ExternalService) -> list[str]:
        return [keys.service_external(service.service_name)]


@translate_errors
class DockerServiceRepository(JsonRepository[DockerService]):
    model = DockerService
    prefix = keys.docker_service("")

    async def put(self, service: DockerService) -> None:
        name = service.service_name
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.docker_service(name), dump(service))
            if service.internal_port:
                pipe.set(keys.service_url(name), f"http://{name}:{service.internal_port}")

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


def _host_port(raw: str) -> int | None:
    try:
        return PortAllocation.model_validate_json(raw).host_port
    except ValueError:
        return None
