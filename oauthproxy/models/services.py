"""Services a route or proxy can name: Docker containers, external URLs, the internal API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AnyHttpUrl, Field

from oauthproxy.models.common import Name, OwnerHash, Record, utcnow


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
