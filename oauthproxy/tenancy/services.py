"""What an owner token may ask of a Docker service. Pure: the request in, a `Refused` out.

A container runs on the gateway's host, so some choices are the admin's alone:
- `dockerfile_path` names a file on the gateway's host, and its directory becomes the build
  context: an owner could copy the gateway's keys and data into an image of its own.
- the `host` network shares the gateway's network namespace: a container there reaches the
  gateway's Redis and admin API on loopback, which no owner target may (`targets`).
- any other named network may be the one the gateway shares with its Redis and admin API (the
  compose project's network): an owner may name only those OWNER_DOCKER_NETWORKS lists.
- labels under `oauthproxy.` are ours (which service, whose): nobody may set them.
"""

from __future__ import annotations

from collections.abc import Collection

from oauthproxy.models.docker import DockerServiceCreate
from oauthproxy.tenancy.caller import Caller, Refused, forbidden

OUR_LABEL_PREFIX = "oauthproxy."
HOST_NETWORK = "host"


def check_labels(labels: dict[str, str]) -> None:
    ours = [label for label in labels if label.startswith(OUR_LABEL_PREFIX)]
    if ours:
        detail = f"labels: {ours[0]} is reserved for the gateway"
        raise Refused(422, "validation_error", detail, field="labels")


def check_docker_service(
    caller: Caller, request: DockerServiceCreate, owner_networks: Collection[str]
) -> None:
    """Refuse what only the admin may ask (403, naming the field); `owner_networks`: the
    networks owners may attach their containers to (OWNER_DOCKER_NETWORKS)."""
    check_labels(request.labels)
    if caller.is_admin:
        return
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
