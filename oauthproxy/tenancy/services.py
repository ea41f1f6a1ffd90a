"""What an owner token may ask of a Docker service. Pure: the request in, a `Refused` out.

A container runs on the gateway's host, so some choices are the admin's alone:
- `dockerfile_path` names a file on the gateway's host, and its directory becomes the build
  context: an owner could copy the gateway's keys and data into an image of its own.
- the `host` network shares the gateway's network namespace: a container there reaches the
  gateway's Redis and admin API on loopback, which no owner target may (`targets`).
- any other named network may be the one the gateway shares with its Redis and admin API (the
  compose project's network): an owner may name only those OWNER_DOCKER_NETWORKS lists (its
  containers are on its own owner network besides: `services.owner_networks`).
- labels under `oauthproxy.` are ours (which service, whose): nobody may set them.
- images the gateway built (`oauthproxy-{service}`, from the admin's `dockerfile_path`) hold
  what the admin copied from the gateway's host: an owner may not run them, by name in any
  spelling or by ID (an owner names images from a registry).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from oauthproxy.models.docker import DockerServiceCreate
from oauthproxy.models.services import DockerService
from oauthproxy.tenancy.caller import Caller, Refused, forbidden

OUR_LABEL_PREFIX = "oauthproxy."
HOST_NETWORK = "host"
BUILT_IMAGE_PREFIX = "oauthproxy-"
"""What the gateway names the images it builds (`oauthproxy-{service}:latest`: one component,
no registry or namespace before it)."""
_IMAGE_ID = re.compile(r"(sha256:)?[0-9a-f]{1,64}")
"""An image given by its ID, or by any prefix of it: the engine takes a unique prefix of any
length (`4` finds the one image whose ID begins with 4), so only a reference with a letter past
`f` (or a tag, a path, a digest) names an image by name."""
_DEFAULT_REGISTRY = ("index.docker.io/", "docker.io/", "library/")


def _repository(image: str) -> str:
    """The repository an image reference names, as the engine resolves it: without its digest
    or tag, and without the default registry's spellings (`docker.io/library/x` is `x`)."""
    name = image.partition("@")[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    for prefix in _DEFAULT_REGISTRY:
        name = name.removeprefix(prefix)
    return name.lower()


def registry_host(image: str) -> str | None:
    """The registry an image reference names (`127.0.0.1:5000/x:1` → `127.0.0.1`), lower-case
    and without its port; None for the default registry. As the engine reads it: the first
    component when it holds a `.` or a `:`, or is `localhost`."""
    first, slash, _rest = image.partition("/")
    if not slash or not ("." in first or ":" in first or first.lower() == "localhost"):
        return None
    if first.startswith("["):  # [::1]:5000
        return first[1 : first.find("]")].lower()
    return first.rpartition(":")[0].lower() if ":" in first else first.lower()


def _local_registry(host: str) -> bool:
    """Whether pulling from `host` reaches this machine or a private network: the engine
    treats a loopback registry as insecure and speaks plain HTTP to it, on a path the owner
    chooses (blind requests to services no owner target may reach)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


def check_image(caller: Caller, image: str | None) -> None:
    """An owner's image: not one the gateway built, nor any given by its ID, nor one from a
    registry on this machine or a private address (403)."""
    if caller.is_admin or image is None:
        return
    repository = _repository(image)
    built = repository.startswith(BUILT_IMAGE_PREFIX) and "/" not in repository
    if built or _IMAGE_ID.fullmatch(image):
        raise forbidden(
            "images the gateway built (oauthproxy-*) and images given by ID are the admin's: "
            "name an image from a registry",
            field="image",
        )
    host = registry_host(image)
    if host is not None and _local_registry(host):
        raise forbidden(
            f"image: the registry {host} is on this machine or a private network: only the "
            "admin token may pull from it",
            field="image",
        )


DOCKER_HUB = "docker.io"
"""How OWNER_IMAGE_REGISTRIES names the default registry (an image without one: `busybox`)."""


def _listed(image: str, registries: Collection[str]) -> bool:
    """Whether `image`'s registry is one of `registries` (each a host, matching any port, or a
    `host:port`; `docker.io` is the default registry, however the image spells it)."""
    first = image.partition("/")[0].lower()
    host = registry_host(image) or DOCKER_HUB
    named = first if host != DOCKER_HUB and ":" in first else host
    listed = {registry.lower().rstrip("/") for registry in registries}
    return host in listed or named in listed or (host == "index.docker.io" and DOCKER_HUB in listed)


def check_registry(caller: Caller, image: str | None, registries: Collection[str]) -> None:
    """OWNER_IMAGE_REGISTRIES: when it lists any, an owner's image comes from one of them (403
    naming `image`); the admin's from anywhere."""
    if caller.is_admin or image is None or not registries or _listed(image, registries):
        return
    raise forbidden(
        f"image: its registry {registry_host(image) or DOCKER_HUB} is not one that "
        f"OWNER_IMAGE_REGISTRIES lets owner tokens pull from ({', '.join(sorted(registries))})",
        field="image",
    )


def check_labels(labels: dict[str, str]) -> None:
    ours = [label for label in labels if label.startswith(OUR_LABEL_PREFIX)]
    if ours:
        detail = f"labels: {ours[0]} is reserved for the gateway"
        raise Refused(422, "validation_error", detail, field="labels")


def _reads_as_address(name: str) -> bool:
    """Whether a resolver takes `name` for an IPv4 address (`2130706433`, `0x7f000001`)."""
    try:
        socket.inet_aton(name)
    except OSError:
        return False
    return True


def check_service_name(name: str, local_names: Collection[str]) -> None:
    """A Docker service is reached at `http://{service_name}:{internal_port}`, its name resolved
    like any hostname, and a `service` route to it is checked by ownership, not by address: a
    name with a dot (`127.0.0.1`, `metadata.google.internal`), one a resolver reads as an
    address, or one the gateway's host resolves itself (`local_names`: localhost, /etc/hosts)
    sent an owner's requests there, past every target rule (403)."""
    lowered = name.lower()
    if "." in name or _reads_as_address(name) or lowered in local_names:
        raise forbidden(
            f"service_name: {name!r} would be resolved as a host of its own (an address, a "
            "name with a dot, or one this host resolves itself) rather than as the service's "
            "container: only the admin token may use such a name",
            field="service_name",
        )


def check_docker_service(
    caller: Caller,
    request: DockerServiceCreate,
    owner_networks: Collection[str],
    local_names: Collection[str] = (),
) -> None:
    """Refuse what only the admin may ask (403, naming the field); `owner_networks`: the
    networks owners may attach their containers to (OWNER_DOCKER_NETWORKS); `local_names`:
    the hostnames the gateway's host resolves itself (see `check_service_name`)."""
    check_labels(request.labels)
    check_image(caller, request.image)
    if caller.is_admin:
        return
    check_service_name(request.service_name, local_names)
    if request.dockerfile_path is not None:
        raise forbidden(
            "dockerfile_path builds from the gateway host's files: only the admin token may; "
            "use an image",
            field="dockerfile_path",
        )
    if HOST_NETWORK in request.networks:
        raise forbidden(
            "the host network shares the gateway's own network: only the admin token may use it",
            field="networks",
        )
    unlisted = [network for network in request.networks if network not in owner_networks]
    if unlisted:
        raise forbidden(
            f"network {unlisted[0]!r} is not one that OWNER_DOCKER_NETWORKS lets owner tokens "
            "use (another network may hold the gateway's Redis and admin API)",
            field="networks",
        )


_MEMORY_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def memory_bytes(limit: str) -> int:
    """A memory limit in Docker's units (`512m`, `2g`, `1048576`) in bytes."""
    unit = limit[-1:].lower()
    if unit in _MEMORY_UNITS:
        return int(limit[:-1]) * _MEMORY_UNITS[unit]
    return int(limit)


@dataclass(frozen=True)
class DockerAllowance:
    """What the containers of one owner may use together: TOKEN_MAX_DOCKER_MEMORY (Docker's
    units) and TOKEN_MAX_DOCKER_CPUS; "0" and 0 set no limit."""

    memory: str = "4g"
    cpus: float = 8.0


def check_docker_resources(
    caller: Caller,
    allowance: DockerAllowance,
    others: Sequence[DockerService],
    memory: str,
    cpus: float,
) -> None:
    """Refuse (403 `quota_exceeded`, naming the field) a service's `memory` or `cpus` that,
    with what the owner's `others` have, goes past `allowance`: one owner's containers cannot
    take the host's memory from everyone (a limit of `9999g` is no limit), nor all its CPUs.
    The admin passes."""
    if caller.is_admin:
        return
    most = memory_bytes(allowance.memory)
    used = sum(memory_bytes(other.memory_limit) for other in others)
    if most and used + memory_bytes(memory) > most:
        raise Refused(
            403,
            "quota_exceeded",
            f"memory_limit: {memory} with the {_mebibytes(used)} this token's other services have "
            f"is more than TOKEN_MAX_DOCKER_MEMORY={allowance.memory} allows; ask for less or "
            "ask the admin to raise it",
            field="memory_limit",
        )
    taken = sum(other.cpu_limit for other in others)
    if allowance.cpus and taken + cpus > allowance.cpus:
        raise Refused(
            403,
            "quota_exceeded",
            f"cpu_limit: {cpus:g} with the {taken:g} this token's other services have is more "
            f"than TOKEN_MAX_DOCKER_CPUS={allowance.cpus:g} allows; ask for less or ask the "
            "admin to raise it",
            field="cpu_limit",
        )


def _mebibytes(size: int) -> str:
    return f"{size / 1024**2:g}m"
