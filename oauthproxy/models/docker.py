"""Request bodies of the Docker service and port endpoints (records are in `models.services`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    model_validator,
)

from oauthproxy.models.common import Hostname, Name, Printable, Query, Request

BindAddress = Literal["127.0.0.1", "0.0.0.0"]  # noqa: S104 - a choice the owner makes, checked
MemoryLimit = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,9}[bkmgBKMG]?$")]
PortName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
RESERVED_NAMES = frozenset({"api", "cleanup", "external", "ports", "unified"})
"""Names that `/api/v1/services/{name}` could not reach, or the internal service's."""
Token = Annotated[str, StringConstraints(min_length=8, max_length=512)]
Argument = Annotated[str, StringConstraints(max_length=8192)]
"""One environment value, command item or label value: each goes to the `docker` CLI (the
environment in an env file, the others on its command line, where the kernel refuses an argument
past 128 KiB, and the whole past ~2 MiB). (8 KiB: a PEM certificate chain fits in size, and a
list of them at its longest stays within a request body's 1 MiB, so a request past these limits
gets its 422, not a 413.)"""


def environment_problem(name: str, value: str) -> str | None:
    """Why `name=value` cannot reach a container, or None. The docker CLI reads the environment
    from an env file (never its command line, which every local user can read): one
    `NAME=value` a line, the value as it is, so a value cannot hold a line break, and a name
    starting with `#` or white space, or holding `=` or white space, reads as something else."""
    if not name or name[0] == "#" or any(c.isspace() or c in "=\x00" for c in name):
        return f"{name!r} is not a variable name (no =, white space or leading #)"
    if any(c in value for c in "\r\n\x00"):
        return f"the value of {name!r} holds a line break or NUL, which an env file cannot carry"
    try:
        (name + value).encode()
    except UnicodeEncodeError:
        return f"{name!r} holds a lone surrogate (\\ud800-\\udfff), which UTF-8 cannot carry"
    return None


def _check_environment(environment: dict[str, str] | None) -> dict[str, str] | None:
    for name, value in (environment or {}).items():
        problem = environment_problem(name, value)
        if problem:
            raise ValueError(problem)
    return environment


Environment = Annotated[
    dict[str, Argument], Field(max_length=100), AfterValidator(_check_environment)
]
"""A container's environment: up to 100 variables that an env file can carry."""

ARGUMENTS_MAX = 262144
"""What `environment`, `command` and `labels` may hold together, in characters."""


def _check_arguments(
    environment: dict[str, str] | None, command: list[str] | None, labels: dict[str, str] | None
) -> None:
    pairs = [*(environment or {}).items(), *(labels or {}).items()]
    size = sum(len(key) + len(value) for key, value in pairs)
    size += sum(len(item) for item in command or ())
    if size > ARGUMENTS_MAX:
        raise ValueError(
            f"environment, command and labels hold {size} characters together, more than "
            f"{ARGUMENTS_MAX} (they go on the docker command line)"
        )


class PortRequest(Request):
    """One host port for a service: `host` is allocated from the exposed range when absent."""

    name: PortName = "http"
    host: PortNumber | None = None
    container: PortNumber
    bind: BindAddress = "127.0.0.1"
    protocol: Literal["tcp", "udp"] = "tcp"
    source_token: Token | None = Field(
        default=None, description="A token clients of this port must present (stored hashed)"
    )
    description: Annotated[str, StringConstraints(max_length=500), Printable] = ""


NOT_RESERVED: list[JsonValue] = [*sorted(RESERVED_NAMES)]

EVERY_PORT_NAMED: dict[str, JsonValue] = {
    "if": {"minItems": 2},
    "then": {"items": {"required": ["name"]}},
}
"""Several ports each need their own name (one alone may keep the default `http`)."""

ONE_SOURCE: list[JsonValue] = [
    {"required": [given], "properties": {given: {"type": "string"}, other: {"type": "null"}}}
    for given, other in (("image", "dockerfile_path"), ("dockerfile_path", "image"))
]
"""Exactly one of `image` and `dockerfile_path`, in JSON Schema (what `_one_source` checks)."""


DockerServiceName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
"""A Docker service's name: lower case. The gateway reaches the container by its name, and a
network's resolver answers names without regard to case: `WEB` beside another owner's `web`
took a share of the traffic for it."""


class DockerServiceCreate(Request):
    service_name: DockerServiceName = Field(json_schema_extra={"not": {"enum": NOT_RESERVED}})
    image: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    dockerfile_path: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    internal_port: PortNumber | None = Field(
        default=None, description="The port the container serves on (default: its image's EXPOSE)"
    )
    memory_limit: MemoryLimit = "512m"
    cpu_limit: float = Field(default=1.0, gt=0, le=64)
    environment: Environment = Field(default_factory=dict)
    command: list[Argument] | None = Field(default=None, max_length=100)
    networks: list[Name] = Field(default_factory=list, max_length=10)
    labels: dict[str, Argument] = Field(default_factory=dict, max_length=50)
    expose_ports: bool = False
    port_configs: list[PortRequest] = Field(
        default_factory=list,
        max_length=20,
        json_schema_extra={"uniqueItems": True, **EVERY_PORT_NAMED},
    )
    bind_address: BindAddress = "127.0.0.1"
    auto_proxy: bool = Field(default=False, description="Also create {name}.{BASE_DOMAIN}")
    start: bool = Field(default=True, description="Start the container once created")

    model_config = ConfigDict(json_schema_extra={"oneOf": ONE_SOURCE})

    @model_validator(mode="after")
    def _one_source(self) -> DockerServiceCreate:
        if self.service_name.lower() in RESERVED_NAMES:
            raise ValueError(f"service_name: {self.service_name!r} names an endpoint of the API")
        if (self.image is None) == (self.dockerfile_path is None):
            raise ValueError("give exactly one of image and dockerfile_path")
        names = [port.name for port in self.port_configs]
        if len(set(names)) != len(names):
            raise ValueError("port_configs: each port needs its own name")
        _check_arguments(self.environment, self.command, self.labels)
        return self


class DockerServiceUpdate(Request):
    """Limits change in place on the running container; a new image, environment, command or
    labels recreate it (with every port the service holds now), running again if it ran."""

    memory_limit: MemoryLimit | None = None
    cpu_limit: float | None = Field(default=None, gt=0, le=64)
    image: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    environment: Environment | None = None
    command: list[Argument] | None = Field(default=None, max_length=100)
    labels: dict[str, Argument] | None = Field(default=None, max_length=50)

    @model_validator(mode="after")
    def _bounded(self) -> DockerServiceUpdate:
        _check_arguments(self.environment, self.command, self.labels)
        return self

    def recreates(self) -> bool:
        return any(
            value is not None for value in (self.image, self.environment, self.command, self.labels)
        )


class DockerServiceDelete(Query):
    force: bool = Field(default=True, description="Stop a running container first")
    delete_proxy: bool = Field(default=False, description="Also delete proxies targeting it")


class ServiceLogsQuery(Query):
    lines: int = Field(default=100, ge=1, le=10000)
    timestamps: bool = False
    follow: bool = Field(
        default=False, description="Keep the response open and send new lines as they come"
    )


class ServiceProxyCreate(Request):
    hostname: Hostname | None = Field(default=None, description="Default: {name}.{BASE_DOMAIN}")
    enable_https: bool = False


class PortUpdate(Request):
    bind: BindAddress | None = None
    source_token: Token | None = None
    require_token: bool | None = None
    description: Annotated[str, StringConstraints(max_length=500), Printable] | None = None


class PortCheck(Request):
    port: PortNumber
    bind_address: BindAddress = "127.0.0.1"


class PortsQuery(Query):
    available_only: bool = False
