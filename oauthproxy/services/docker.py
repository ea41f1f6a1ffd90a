"""The Docker engine: the only module that imports python_on_whales.

python-on-whales drives the `docker` CLI in a subprocess, so every call blocks: each one runs in
`trio.to_thread.run_sync`, never on the event loop. Its container and image objects are lazy: an
attribute read more than 10 ms after their last inspect (its CACHE_VALIDITY_PERIOD) runs `docker
inspect` again. So they are read into our own types in the same worker thread and never reach
the event loop, where a read would block it and would meet a container removed meanwhile as a
raw NoSuchContainer (which killed the Docker events follower, and with it the gateway, when a
container was replaced under load). Its exceptions are translated here, at the edge: an engine
that cannot be reached (or no `docker` CLI) is `EngineUnavailable`, naming DOCKER_HOST; a missing
container is `NotFound`; any other refusal of the engine is `EngineError` with the engine's own
message. Callers never see a python-on-whales type.

`DOCKER_HOST` says where the engine listens, `DOCKER_API_VERSION` is passed to the CLI as its
environment variable of that name (the API version it speaks), so both act on every call.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import trio
from python_on_whales import DockerClient
from python_on_whales.exceptions import (
    DockerException,
    NoSuchContainer,
    NoSuchImage,
    NoSuchNetwork,
)

from oauthproxy.errors import Conflict, GatewayError, NotFound
from oauthproxy.models.docker import environment_problem

P = ParamSpec("P")
T = TypeVar("T")

MANAGED_LABEL = "oauthproxy.managed"
SERVICE_LABEL = "oauthproxy.service"
OWNER_LABEL = "oauthproxy.owner"
"""Our labels on every container we create: that it is ours, for which service, whose."""

UNREACHABLE_MARKERS = (
    "Cannot connect to the Docker daemon",
    "connect: no such file or directory",
    "connection refused",
    "error during connect",
    "Is the docker daemon running",
    "'docker': No such file or directory",  # `env` found no docker CLI to run
)


class EngineUnavailable(GatewayError):
    """The Docker engine at DOCKER_HOST cannot be reached (or the `docker` CLI is missing)."""

    def __init__(self, docker_host: str, reason: str) -> None:
        where = f"the Docker engine at DOCKER_HOST={docker_host}"
        super().__init__(f"{where} is not reachable: {reason}")
        self.docker_host = docker_host


class EngineError(GatewayError):
    """The engine refused a request (no such image, a bad limit, a name taken...)."""


MAX_LOG_BYTES = 1 << 20
"""The most of a container's output one logs request returns (the newest part of it)."""
MAX_LOG_LINE = 16384
"""The longest line it returns (the engine's json-file driver splits lines there too)."""

LOG_OPTIONS = ("max-size=10m", "max-file=3")
"""What one container's output may keep on the host's disk (json-file: 3 files of 10 MB): the
engine kept all of it, and an owner's container printing without end filled the disk that Redis
and every tenant share (~64 MiB in 2 s)."""
PIDS_LIMIT = 4096
"""Processes one service's container may hold: a fork bomb in an owner's container otherwise
takes the host's process table, and the gateway can no longer start the `docker` CLI it drives
the engine with (nor anything else on the host)."""

ALREADY_CONNECTED = ("already exists in network", "already connected", "already attached")
"""What the engine says when a container is on a network already (20.10: an endpoint of the
container's name exists in it; later engines: it is connected)."""
NOT_CONNECTED = ("is not connected", "not connected to")

NAME_TAKEN = "is already in use by container"
"""What the engine says when a container of the name exists (its message goes on to name that
container's ID)."""


@dataclass(frozen=True)
class PortMapping:
    host_port: int
    container_port: int
    bind_address: str = "127.0.0.1"
    protocol: str = "tcp"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything the engine needs to create one service's container."""

    name: str
    image: str
    command: tuple[str, ...] = ()
    memory: str | None = None
    cpus: float | None = None
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    networks: tuple[str, ...] = ()
    ports: tuple[PortMapping, ...] = ()


@dataclass(frozen=True)
class ContainerState:
    name: str
    status: str
    """The engine's word: created, running, exited, paused, restarting, removing, dead."""
    exit_code: int | None
    labels: dict[str, str]
    published: frozenset[PortMapping] = frozenset()
    """The host ports the container is created to publish."""
    networks: tuple[str, ...] = ()
    """The networks the container is attached to, by name, sorted."""


@dataclass(frozen=True)
class NetworkState:
    """One network as an inspect read it."""

    id: str
    name: str
    labels: dict[str, str]
    created: datetime | None
    containers: tuple[str, ...]
    """The names of the containers attached to it."""


@dataclass(frozen=True)
class ContainerStats:
    cpu_percentage: float
    memory_used: int
    memory_limit: int
    memory_percentage: float
    net_upload: int
    net_download: int
    block_read: int
    block_write: int


@dataclass(frozen=True)
class EngineEvent:
    """A container's lifecycle event (`die`, `start`, `destroy`...) from the engine's stream."""

    action: str
    container: str
    labels: dict[str, str]


class DockerEngine:
    """One engine, as DOCKER_HOST and DOCKER_API_VERSION name it."""

    def __init__(self, host: str, api_version: str) -> None:
        self.host = host
        call = ["env", f"DOCKER_API_VERSION={api_version}", "docker"] if api_version else ["docker"]
        self._client = DockerClient(host=host, client_call=call)
        self._networks_made = threading.Lock()
        """Held while a network is looked up and made (`_ensure_network`), in the worker
        thread that does it, so a cancelled caller's thread still holds it."""

    async def _run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await trio.to_thread.run_sync(
            functools.partial(self._translated, call, *args, **kwargs), abandon_on_cancel=True
        )

    def _translated(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return call(*args, **kwargs)
        except NoSuchContainer:
            raise NotFound("container", "of this service") from None
        except NoSuchImage as error:
            reason = _last_line(_reason(error))
            raise EngineError(reason if "image" in reason.lower() else "no such image") from None
        except DockerException as error:
            message = _reason(error)
            if any(marker.lower() in message.lower() for marker in UNREACHABLE_MARKERS):
                raise EngineUnavailable(self.host, _last_line(message)) from None
            raise EngineError(_last_line(message)) from None
        except (FileNotFoundError, PermissionError) as error:
            raise EngineUnavailable(self.host, f"cannot run the docker CLI: {error}") from None
        except OSError as error:  # E2BIG: arguments past the kernel's limit, and the like
            raise EngineError(f"the docker CLI could not be run: {error.strerror}") from None

    # --- the engine ----------------------------------------------------------------------------

    async def version(self) -> str:
        """The engine's API version; `EngineUnavailable` when it does not answer."""
        found = await self._run(self._client.version)
        return str(found.server.api_version if found.server else "?")

    async def build(self, dockerfile: Path, tag: str) -> str:
        """Build `dockerfile` (its directory is the context) as `tag`."""
        if not await trio.Path(dockerfile).is_file():
            raise EngineError(f"no Dockerfile at {dockerfile}")
        build = self._client.legacy_build
        image = await self._run(build, dockerfile.parent, file=dockerfile, tags=[tag])
        return str(image.id)

    async def exposed_ports(self, image: str) -> list[int]:
        """The TCP ports `image` declares with EXPOSE, lowest first."""
        return await self._run(self._exposed_ports, image)

    def _exposed_ports(self, image: str) -> list[int]:
        exposed = self._client.image.inspect(image).config.exposed_ports or {}
        return sorted(int(key.split("/")[0]) for key in exposed if key.endswith("/tcp"))

    async def subnets(self) -> list[str]:
        """The address ranges of the engine's networks: where its containers' addresses are."""
        return await self._run(self._subnets)

    def _subnets(self) -> list[str]:
        found = []
        for network in self._client.network.list():
            for config in network.ipam.config or []:
                subnet = config.get("Subnet") if isinstance(config, dict) else None
                if subnet:
                    found.append(str(subnet))
        return found

    # --- networks ------------------------------------------------------------------------------

    async def networks(self, labels: dict[str, str]) -> list[NetworkState]:
        """The networks carrying all of `labels`, oldest first (then by ID): every caller picks
        the same one of several of one name."""
        return await self._run(self._networks, labels)

    def _networks(self, labels: dict[str, str]) -> list[NetworkState]:
        filters: list[tuple[Literal["label"], str]] = [
            ("label", f"{key}={value}") for key, value in labels.items()
        ]
        found = []
        for network in self._client.network.list(filters=filters):
            try:
                found.append(_network_state(network))
            except NoSuchNetwork:  # removed since the listing
                continue
        return sorted(found, key=lambda n: (n.created or datetime.min.replace(tzinfo=UTC), n.id))

    async def ensure_network(self, name: str, labels: dict[str, str]) -> NetworkState:
        """The bridge network `name` carrying `labels`, created when there is none. Idempotent
        and safe to race: callers in this process take turns (`_networks_made`), and against
        another process's create (the engine allows several networks of one name, or says the
        name exists) the answer is the oldest network of that name with those labels, as a
        listing after the create finds it; younger duplicates without containers are removed
        (best effort)."""
        return await self._run(self._ensure_network, name, labels)

    def _ensure_network(self, name: str, labels: dict[str, str]) -> NetworkState:
        def named() -> list[NetworkState]:
            return [n for n in self._networks(labels) if n.name == name]

        # (in turn: two creates at once can finish out of their order of age, and a caller
        # that listed between them would answer the network the other then removes)
        with self._networks_made:
            if not (found := named()):
                try:
                    self._client.network.create(name, driver="bridge", labels=labels)
                except DockerException as error:
                    if "already exists" not in _reason(error):
                        raise
                found = named()
            if not found:
                raise EngineError(f"network {name!r} exists on the Docker host but is not ours")
            for duplicate in found[1:]:  # (another process's, made at the same moment)
                if not duplicate.containers:
                    with contextlib.suppress(DockerException):
                        self._client.network.remove(duplicate.id)
            return found[0]

    async def remove_network(self, network: str) -> None:
        """Remove the network (`EngineError` while containers are attached to it)."""
        await self._run(self._client.network.remove, network)

    async def connect(self, network: str, container: str) -> None:
        """Attach the container to the network; nothing when it is attached already."""
        try:
            await self._run(self._client.network.connect, network, container)
        except EngineError as error:
            if not any(said in str(error) for said in ALREADY_CONNECTED):
                raise

    async def sysctls(self, container: str) -> dict[str, str]:
        """The kernel settings the container was created with (`--sysctl`, compose's
        `sysctls`): what it does not set, it inherits from the host."""
        return await self._run(self._sysctls_of, container)

    def _sysctls_of(self, container: str) -> dict[str, str]:
        settings = self._client.container.inspect(container).host_config.sysctls or {}
        return {str(name): str(value) for name, value in settings.items()}

    async def disconnect(self, network: str, container: str) -> None:
        """Detach the container from the network; nothing when it is not attached."""
        try:
            await self._run(self._client.network.disconnect, network, container)
        except EngineError as error:
            if not any(said in str(error) for said in NOT_CONNECTED):
                raise

    # --- containers ----------------------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> str:
        """Create (not start) the container. It runs under the engine's init process: a service
        whose own process ignores SIGTERM as PID 1 would otherwise take the full stop timeout
        to stop, and its orphaned children would never be reaped."""
        try:
            container_id = await self._run(self._create, spec)
        except EngineError as error:
            if NAME_TAKEN not in str(error):
                raise
            # the engine's message names the other container's full ID: not the caller's to see
            raise Conflict(
                "service_name",
                f"a container named {spec.name!r} already exists on the Docker host; "
                "choose another service_name",
            ) from None
        return container_id

    def _create(self, spec: ContainerSpec) -> str:
        """The environment reaches the CLI in an env file (`--env-file`), never as `--env` on
        its command line: every local user of the host reads a process's command line in
        /proc/*/cmdline (and python-on-whales logs the command), and an owner's environment
        holds its API keys. The file is readable by the gateway's user only, in a directory of
        its own, and removed with it once the CLI has returned, whatever it answered."""
        with tempfile.TemporaryDirectory(prefix="oauthproxy-env-") as private:  # mode 0700
            env_file = Path(private) / "environment"
            written = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(written, "wb") as out:
                out.write(env_file_text(spec.environment).encode())
            container = self._client.container.create(
                spec.image,
                list(spec.command),
                name=spec.name,
                memory=spec.memory,
                cpus=spec.cpus,
                env_files=[env_file],
                labels=spec.labels,
                networks=list(spec.networks),
                publish=[_publish(mapping) for mapping in spec.ports],
                init=True,
                pids_limit=PIDS_LIMIT,
                log_driver="json-file",
                log_options=LOG_OPTIONS,
            )
            return str(container.id)

    def _ours(self, name: str) -> str:
        """The full ID of the gateway's container of the service `name` (`NotFound` when there
        is none): the one of exactly that name carrying our labels for it. Every action on a
        service's container goes through it, never through a bare name: the engine reads a
        bare reference as a full ID, else a name, else an ID prefix, so a service named `f6c2`
        acted on whatever container's ID starts so, and one named like an unmanaged container
        (the gateway's Redis) on that one, whenever the service's own container was missing."""
        found = self._client.container.list(
            all=True,
            filters=[
                ("name", f"^/{name}$"),
                ("label", MANAGED_LABEL),
                ("label", f"{SERVICE_LABEL}={name}"),
            ],
        )
        if not found:
            raise NotFound("container", "of this service")
        return str(found[0].id)

    async def start(self, name: str) -> None:
        await self._run(lambda: self._client.container.start(self._ours(name)))

    async def stop(self, name: str) -> None:
        await self._run(lambda: self._client.container.stop(self._ours(name)))

    async def restart(self, name: str) -> None:
        await self._run(lambda: self._client.container.restart(self._ours(name)))

    async def remove(self, name: str) -> None:
        """Remove our container of that name (stopping it first); nothing when there is none,
        or when no container of that name is ours (`_ours`): the gateway never removes a
        container it did not create. (A service named like a container already on the engine
        fails to create, and undoing it removed that container: any owner could remove the
        gateway's Redis, or anything else on the host.)"""
        try:
            await self._run(lambda: self._client.container.remove(self._ours(name), force=True))
        except NotFound:
            return

    async def update(self, name: str, *, memory: str | None, cpus: float | None) -> None:
        """Change a container's limits in place (no restart)."""
        await self._run(
            lambda: self._client.container.update(self._ours(name), memory=memory, cpus=cpus)
        )

    async def state(self, name: str) -> ContainerState:
        """The container's state as one inspect in the worker thread read it; `NotFound` when
        there is no such container (also when it goes while it is being read)."""
        return await self._run(self._state_of, name)

    def _state_of(self, name: str) -> ContainerState:
        return _state(self._client.container.inspect(self._ours(name)))

    async def managed(self) -> list[ContainerState]:
        """Every container carrying our label, running or not (one removed between the listing
        and its inspect is not there any more, so it is not in the list)."""
        return await self._run(self._managed)

    def _managed(self) -> list[ContainerState]:
        found = self._client.container.list(all=True, filters=[("label", MANAGED_LABEL)])
        states = []
        for container in found:
            try:
                states.append(_state(container))  # inspects it: the listing holds only its id
            except NoSuchContainer:
                continue
        return states

    async def logs(
        self, name: str, *, lines: int | None, timestamps: bool, since: datetime | None = None
    ) -> list[str]:
        """The container's output: the last `lines` lines, or all since `since`; at most the
        last MAX_LOG_BYTES of it, each line at most MAX_LOG_LINE characters."""
        return await self._run(self._logs, name, lines, timestamps, since)

    def _logs(
        self, name: str, lines: int | None, timestamps: bool, since: datetime | None
    ) -> list[str]:
        """Read as a stream, keeping only the last MAX_LOG_BYTES: the CLI's whole output held
        at once (10,000 lines of 8 KiB: 82 MB, several copies of it decoded and split) let one
        owner's request exhaust the API's memory."""
        kept: collections.deque[bytes] = collections.deque()
        size, dropped = 0, False
        output = self._client.container.logs(
            self._ours(name), tail=lines, timestamps=timestamps, since=since, stream=True
        )
        assert not isinstance(output, str)  # (typed `str | Iterable`: stream=True is the latter)
        for _source, chunk in output:
            kept.append(chunk)
            size += len(chunk)
            while size - len(kept[0]) >= MAX_LOG_BYTES:
                size -= len(kept.popleft())
                dropped = True
        text = b"".join(kept)
        if len(text) > MAX_LOG_BYTES:
            text, dropped = text[-MAX_LOG_BYTES:], True
        found = text.decode(errors="replace").splitlines()
        # what was dropped ended in the middle of a line, most likely: that line goes too
        return [line[:MAX_LOG_LINE] for line in (found[1:] if dropped else found)]

    async def stats(self, name: str) -> ContainerStats:
        found = await self._run(lambda: self._client.container.stats(self._ours(name)))
        if not found:
            raise NotFound("container", name)
        s = found[0]
        return ContainerStats(
            cpu_percentage=float(s.cpu_percentage or 0),
            memory_used=int(s.memory_used or 0),
            memory_limit=int(s.memory_limit or 0),
            memory_percentage=float(s.memory_percentage or 0),
            net_upload=int(s.net_upload or 0),
            net_download=int(s.net_download or 0),
            block_read=int(s.block_read or 0),
            block_write=int(s.block_write or 0),
        )

    async def follow_events(
        self, since: datetime, until: datetime, deliver: Callable[[EngineEvent], None]
    ) -> None:
        """Call `deliver` (from a worker thread) with each container event of ours between
        `since` and `until`, as the engine reports it; returns at `until`. Bounded windows keep
        the CLI process short-lived: a cancelled follower leaves no stream running past its
        window."""
        await self._run(self._follow, since, until, deliver)

    def _follow(
        self, since: datetime, until: datetime, deliver: Callable[[EngineEvent], None]
    ) -> None:
        filters = {"type": "container", "label": MANAGED_LABEL}
        for event in self._client.system.events(since=since, until=until, filters=filters):
            actor = event.actor
            attributes: dict[str, Any] = dict(actor.attributes or {}) if actor else {}
            deliver(
                EngineEvent(
                    action=str(event.action or ""),
                    container=str(attributes.get("name", "")),
                    labels={k: str(v) for k, v in attributes.items()},
                )
            )


def env_file_text(environment: dict[str, str]) -> str:
    """`environment` as the docker CLI reads an env file: one `NAME=value` a line, the value as
    it is (no quoting, no escapes). A line cannot carry a line break, and a name that starts
    with `#` or white space, or holds `=`, reads as another line: the API refuses those
    (`models.docker.Environment`); one stored before it did is refused here, not passed on
    mangled."""
    lines = []
    for name, value in environment.items():
        problem = environment_problem(name, value)
        if problem:
            raise EngineError(f"environment: {problem}")
        lines.append(f"{name}={value}\n")
    return "".join(lines)


def _publish(mapping: PortMapping) -> tuple[str, int, str]:
    host = f"{mapping.bind_address}:{mapping.host_port}"
    return (host, mapping.container_port, mapping.protocol)


def _state(container: Any) -> ContainerState:
    state = container.state
    return ContainerState(
        name=str(container.name).lstrip("/"),
        status=str(state.status or "unknown"),
        exit_code=state.exit_code,
        labels=dict(container.config.labels or {}),
        published=_published(container),
        networks=tuple(sorted((container.network_settings.networks or {}).keys())),
    )


def _network_state(network: Any) -> NetworkState:
    containers = network.containers or {}
    return NetworkState(
        id=str(network.id),
        name=str(network.name),
        labels=dict(network.labels or {}),
        created=network.created,
        containers=tuple(sorted(str(c.name) for c in containers.values() if c.name)),
    )


def _published(container: Any) -> frozenset[PortMapping]:
    """The container's port bindings (`HostConfig.PortBindings`) as our mappings."""
    host_config = getattr(container, "host_config", None)
    bindings = (host_config.port_bindings if host_config else None) or {}
    found = set()
    for key, binds in bindings.items():
        port, _, protocol = str(key).partition("/")
        for bind in binds or []:
            host = int(bind.host_port) if bind.host_port else 0
            address = bind.host_ip or "0.0.0.0"  # noqa: S104 - what the engine's empty means
            found.add(PortMapping(host, int(port), address, protocol or "tcp"))
    return frozenset(found)


def _reason(error: DockerException) -> str:
    """What the CLI said (its error output, else its output), never the exception's own text:
    that begins with the whole command, our DOCKER_HOST and API version with it, and is the
    answer an owner would read."""
    said = (error.stderr or "").strip() or (error.stdout or "").strip()
    return said or f"the docker CLI failed (exit status {error.return_code})"


def _last_line(message: str) -> str:
    """The engine's reason: its own answer (`Error response from daemon: …`) when the CLI
    quotes one (a failed start ends with the CLI's summary, which names no cause), else the
    CLI's last line."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    from_engine = [line for line in lines if line.startswith("Error response from daemon:")]
    return (from_engine or lines or [message])[-1]
