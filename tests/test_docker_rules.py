"""The pure rules behind Docker services: which host ports a service may hold, who may use one,
what only the admin may ask of a container, how a record maps to a container. Table-driven, no
I/O."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from oauthproxy.api.docker_create import container_spec
from oauthproxy.models.docker import DockerServiceCreate
from oauthproxy.models.services import DockerService, PortAllocation
from oauthproxy.services.docker import PortMapping
from oauthproxy.services.ports import check_port, port_problem, token_hash
from oauthproxy.storage.services import docker_service_url
from oauthproxy.tenancy.caller import Caller, Refused
from oauthproxy.tenancy.ports import PortAccess, check_port_target, port_access, usable
from oauthproxy.tenancy.services import (
    DockerAllowance,
    check_docker_resources,
    check_docker_service,
    check_registry,
    memory_bytes,
)
from oauthproxy.tenancy.targets import Destination

OWNER = Caller(token_hash="sha256:" + "a" * 64, is_admin=False)
ADMIN = Caller(token_hash="sha256:" + "b" * 64, is_admin=True)


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        (11000, None),
        (65535, None),
        (12345, None),
        (22, "restricted"),
        (6379, "restricted"),
        (27017, "restricted"),
        (9000, "internal range"),
        (10999, "internal range"),
        (3000, "outside the exposed range 11000-65535"),
        (1, "outside the exposed range"),
    ],
)
def test_port_rules(port: int, problem: str | None) -> None:
    found = port_problem(port)
    assert (found is None) == (problem is None)
    if problem is not None:
        assert problem in str(found)
        with pytest.raises(Refused) as refused:
            check_port(port, field="host")
        assert (refused.value.status, refused.value.field) == (422, "host")


def test_a_source_token_is_kept_only_as_its_hash() -> None:
    hashed = token_hash("secret-token")
    assert hashed.startswith("sha256:") and "secret-token" not in hashed


@pytest.mark.parametrize(
    ("who", "fields", "status", "field"),
    [
        (OWNER, {"image": "x"}, None, None),
        (OWNER, {"image": "x", "networks": ["host"]}, 403, "networks"),
        (ADMIN, {"image": "x", "networks": ["host"]}, None, None),
        (OWNER, {"image": "x", "networks": ["apps"]}, None, None),
        (OWNER, {"image": "x", "networks": ["apps", "oauthproxy_default"]}, 403, "networks"),
        (ADMIN, {"image": "x", "networks": ["oauthproxy_default"]}, None, None),
        (OWNER, {"dockerfile_path": "/srv/Dockerfile"}, 403, "dockerfile_path"),
        (ADMIN, {"dockerfile_path": "/srv/Dockerfile"}, None, None),
        (ADMIN, {"image": "x", "labels": {"oauthproxy.owner": "me"}}, 422, "labels"),
        (OWNER, {"image": "x", "labels": {"team": "qa"}}, None, None),
        # a service is reached at http://{service_name}:{port}: names a resolver takes for
        # another host sent an owner's `service` routes there, past every target rule
        (OWNER, {"image": "x", "service_name": "127.0.0.1"}, 403, "service_name"),
        (OWNER, {"image": "x", "service_name": "169.254.169.254"}, 403, "service_name"),
        (OWNER, {"image": "x", "service_name": "metadata.google.internal"}, 403, "service_name"),
        (OWNER, {"image": "x", "service_name": "2130706433"}, 403, "service_name"),
        (OWNER, {"image": "x", "service_name": "0x7f000001"}, 403, "service_name"),
        (OWNER, {"image": "x", "service_name": "localhost"}, 403, "service_name"),
        (OWNER, {"image": "x", "service_name": "gateway-host"}, 403, "service_name"),
        (OWNER, {"image": "x", "service_name": "web-2"}, None, None),
        # the engine speaks plain HTTP to a loopback registry, on a path the owner chooses
        (OWNER, {"image": "127.0.0.1:1/probe:1"}, 403, "image"),
        (OWNER, {"image": "localhost:5000/x"}, 403, "image"),
        (OWNER, {"image": "[::1]:5000/x"}, 403, "image"),
        (OWNER, {"image": "10.0.0.5/team/app"}, 403, "image"),
        (OWNER, {"image": "ghcr.io/team/app:1"}, None, None),
        (OWNER, {"image": "team/app:1"}, None, None),
        (ADMIN, {"image": "127.0.0.1:5000/app:1"}, None, None),
        (ADMIN, {"image": "x", "service_name": "127.0.0.1"}, None, None),
    ],
)
def test_what_only_the_admin_may_ask(
    who: Caller, fields: dict[str, Any], status: int | None, field: str | None
) -> None:
    request = DockerServiceCreate.model_validate({"service_name": "svc", **fields})
    owner_networks = {"apps", "host"}  # (host stays the admin's even when listed)
    local = {"localhost", "gateway-host"}  # (localhost, the host's name and /etc/hosts)
    if status is None:
        check_docker_service(who, request, owner_networks, local)
        return
    with pytest.raises(Refused) as refused:
        check_docker_service(who, request, owner_networks, local)
    assert (refused.value.status, refused.value.field) == (status, field)


@pytest.mark.parametrize(
    ("who", "image", "registries", "allowed"),
    [
        (OWNER, "ghcr.io/team/app:1", [], True),  # no list: any registry
        (OWNER, "ghcr.io/team/app:1", ["ghcr.io"], True),
        (OWNER, "GHCR.io:443/team/app", ["ghcr.io"], True),  # a host matches any port
        (OWNER, "ghcr.io:8443/team/app", ["ghcr.io:443"], False),
        (OWNER, "ghcr.io:443/team/app", ["ghcr.io:443"], True),
        (OWNER, "quay.io/team/app", ["ghcr.io"], False),
        (OWNER, "busybox", ["ghcr.io"], False),  # the default registry is docker.io
        (OWNER, "busybox", ["docker.io"], True),
        (OWNER, "docker.io/library/busybox", ["docker.io"], True),
        (OWNER, "index.docker.io/library/busybox", ["docker.io"], True),
        (OWNER, "ghcr.io.evil.example/app", ["ghcr.io"], False),
        (ADMIN, "quay.io/team/app", ["ghcr.io"], True),
    ],
)
def test_owner_image_registries(
    who: Caller, image: str, registries: list[str], allowed: bool
) -> None:
    if allowed:
        check_registry(who, image, registries)
        return
    with pytest.raises(Refused) as refused:
        check_registry(who, image, registries)
    assert (refused.value.status, refused.value.field) == (403, "image")
    assert "OWNER_IMAGE_REGISTRIES" in refused.value.detail


@pytest.mark.parametrize(
    ("limit", "size"),
    [("1048576", 2**20), ("512m", 512 * 2**20), ("2G", 2 * 2**30), ("64k", 2**16), ("7b", 7)],
)
def test_memory_limits_read_in_dockers_units(limit: str, size: int) -> None:
    assert memory_bytes(limit) == size


def _service(name: str, memory: str, cpus: float) -> DockerService:
    return DockerService(service_name=name, memory_limit=memory, cpu_limit=cpus)


@pytest.mark.parametrize(
    ("who", "allowance", "memory", "cpus", "field"),
    [
        (OWNER, DockerAllowance("1g", 2), "512m", 1, None),  # exactly the allowance
        (OWNER, DockerAllowance("1g", 2), "513m", 1, "memory_limit"),
        (OWNER, DockerAllowance("1g", 2), "512m", 1.01, "cpu_limit"),
        (OWNER, DockerAllowance("0", 0), "9999g", 64, None),  # 0: no limit
        (ADMIN, DockerAllowance("1g", 2), "9999g", 64, None),
    ],
)
def test_an_owners_containers_share_one_allowance(
    who: Caller, allowance: DockerAllowance, memory: str, cpus: float, field: str | None
) -> None:
    others = [_service("a", "256m", 0.5), _service("b", "256m", 0.5)]
    if field is None:
        check_docker_resources(who, allowance, others, memory, cpus)
        return
    with pytest.raises(Refused) as refused:
        check_docker_resources(who, allowance, others, memory, cpus)
    assert (refused.value.status, refused.value.error, refused.value.field) == (
        403,
        "quota_exceeded",
        field,
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"service_name": "svc"},
        {"service_name": "svc", "image": "a", "dockerfile_path": "b"},
        {"service_name": "ports", "image": "a"},
        {"service_name": "svc", "image": "a", "memory_limit": "lots"},
        {"service_name": "svc", "image": "a", "cpu_limit": 0},
        {"service_name": "svc", "image": "a", "bind_address": "10.0.0.1"},
        {"service_name": "svc", "image": "a", "port_configs": [{"container": 1}, {"container": 2}]},
    ],
)
def test_bad_requests_are_refused_by_the_model(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DockerServiceCreate.model_validate(fields)


def test_the_container_carries_our_labels_and_publishes_ports_off_the_host_network() -> None:
    service = DockerService(
        service_name="web", image="img", internal_port=80, labels={"team": "qa"},
        owner_token_hash=OWNER.token_hash,
    )  # fmt: skip
    port = PortAllocation(service_name="web", port_name="http", host_port=12000, container_port=80)
    spec = container_spec(service, [port])
    assert spec.labels == {
        "team": "qa", "oauthproxy.managed": "true", "oauthproxy.service": "web",
        "oauthproxy.owner": OWNER.token_hash,
    }  # fmt: skip
    assert spec.ports == (PortMapping(12000, 80, "127.0.0.1", "tcp"),)
    assert docker_service_url(service) == "http://web:80"
    on_host = service.model_copy(update={"networks": ["host"]})
    assert container_spec(on_host, [port]).ports == ()
    assert docker_service_url(on_host) == "http://127.0.0.1:80"


OTHER = Caller(token_hash=token_hash("bobs-api-token"), is_admin=False)


@pytest.mark.parametrize(
    ("who", "source_token", "require_token", "access"),
    [
        (ADMIN, None, False, PortAccess.OWNER),
        (OWNER, None, False, PortAccess.OWNER),
        (OWNER, "bobs-api-token", True, PortAccess.OWNER),
        (OTHER, None, False, PortAccess.DENIED),
        (OTHER, "bobs-api-token", True, PortAccess.GRANTED),
        (OTHER, "bobs-api-token", False, PortAccess.DENIED),  # the grant switched off
        (OTHER, "someone-elses", True, PortAccess.DENIED),
    ],
)
def test_who_may_use_a_port(
    who: Caller, source_token: str | None, require_token: bool, access: PortAccess
) -> None:
    port = PortAllocation(
        service_name="web", port_name="http", host_port=12000, container_port=80,
        owner_token_hash=OWNER.token_hash, require_token=require_token,
        source_token_hash=token_hash(source_token) if source_token else None,
    )  # fmt: skip
    assert port_access(who, port) is access
    assert usable(who, [port]) == ([] if access is PortAccess.DENIED else [port])
    destination = Destination("target_url", "127.0.0.1", 12000)
    if access is PortAccess.DENIED:
        with pytest.raises(Refused) as refused:
            check_port_target(who, destination, port)
        assert (refused.value.status, refused.value.error) == (403, "target_not_allowed")
        assert "web" not in refused.value.detail  # names neither the service nor its owner
    else:
        check_port_target(who, destination, port)
