"""Services a route or proxy can name: Docker containers, external URLs, the internal API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AnyHttpUrl, Field, StringConstraints

from oauthproxy.models.common import (
    Name,
    Omittable,
    OwnerHash,
    Printable,
    Query,
    Record,
    Request,
    utcnow,
)


class ServiceType(StrEnum):
    DOCKER = "docker"
    EXTERNAL = "external"
    INTERNAL = "internal"


class PortConfig(Record):
    name: str
    host: int = Field(ge=1, le=65535)
    container: int = Field(ge=1, le=65535)
    bind: str = "127.0.0.1"
    protocol: str = Field(default="tcp", pattern=r"^(tcp|udp)$")
    source_token: str | None = None
    """Never shown: a port's source token is kept only as its hash (`PortAllocation`)."""
    require_token: bool = False


class DockerService(Record):
    """`docker_service:{name}`."""

    service_name: Name
    service_type: ServiceType = ServiceType.DOCKER
    image: str | None = None
    dockerfile_path: str | None = None
    internal_port: int | None = Field(default=None, ge=1, le=65535)
    external_port: int | None = Field(default=None, ge=1, le=65535)
    memory_limit: str = "512m"
    cpu_limit: float = 1.0
    environment: dict[str, str] = Field(default_factory=dict)
    command: list[str] | None = None
    networks: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    expose_ports: bool = False
    port_configs: list[PortConfig] = Field(default_factory=list)
    bind_address: str = "127.0.0.1"
    owner_token_hash: OwnerHash | None = None
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    status: str | None = None
    """The container's status as the gateway last saw it (its events follower, its own start
    and stop); proxies and routes to a service whose status is not `running` answer 503."""


class ExternalService(Record):
    """`service:external:{name}`, with `service:url:{name}` and the set `services:external`."""

    service_name: Name
    service_type: ServiceType = ServiceType.EXTERNAL
    target_url: AnyHttpUrl
    description: str = ""
    routing_enabled: bool = True
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    owner_token_hash: OwnerHash | None = None


class InternalService(Record):
    """A built-in service; `api` (the admin API, `service:url:api`) is the only one."""

    service_name: str
    service_type: ServiceType = ServiceType.INTERNAL
    target_url: str
    description: str = ""


Description = Annotated[str, StringConstraints(max_length=1000), Printable]


class ExternalServiceCreate(Request):
    service_name: Name
    target_url: AnyHttpUrl = Field(description="Where the service is: an http:// or https:// URL")
    description: Description = ""
    routing_enabled: bool = True

    def service(self, *, owner_token_hash: str, created_by: str) -> ExternalService:
        return ExternalService(
            **self.model_dump(), owner_token_hash=owner_token_hash, created_by=created_by
        )


class ExternalServiceUpdate(Request):
    """A partial update: only the fields present change."""

    target_url: Omittable[AnyHttpUrl] = None
    description: Omittable[Description] = None
    routing_enabled: Omittable[bool] = None


class ServiceQuery(Query):
    type: ServiceType | None = Field(default=None, description="Only services of this type")


class PortAllocation(Record):
    """`port:{port}`, and one field of `service:ports:{service}`."""

    service_name: str
    port_name: str
    host_port: int = Field(ge=1, le=65535)
    container_port: int = Field(ge=1, le=65535)
    bind_address: str = "127.0.0.1"
    protocol: str = "tcp"
    source_token_hash: str | None = None
    require_token: bool = False
    owner_token_hash: OwnerHash | None = None
    description: str = ""
