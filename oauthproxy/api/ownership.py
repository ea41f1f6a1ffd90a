"""The admin API's side of the tenant model: it gathers the facts, `oauthproxy.tenancy` decides.

Here live the I/O the rules need and never do themselves: who is calling (`caller`), what the
caller owns (`holdings`), where a target resolves, whether those addresses are this host's and
which service port is there (`check_target`), and the locks under which a check and the write it
allows are one step: per owner (`owner_serialized`, `quota_slot`: a quota's last slot, or a proxy
being deleted while a route naming it is stored) and per Docker service (`service_serialized`).
Handlers call these and the rules; none carries an ownership rule of its
own. Also the small helpers every owned-record blueprint shares (`storage`, `patched`).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio
from pydantic import BaseModel, ValidationError
from quart import current_app

from oauthproxy.api.auth import current_token
from oauthproxy.api.errors import ApiError, field_problems
from oauthproxy.api.state import app_state
from oauthproxy.models.routes import Route, TargetType
from oauthproxy.services.docker import EngineError, EngineUnavailable
from oauthproxy.storage import Storage
from oauthproxy.storage.locks import Locks, owner_locks, service_locks
from oauthproxy.tenancy.caller import Caller, forbidden
from oauthproxy.tenancy.ports import check_port_target
from oauthproxy.tenancy.quotas import Quota, Quotas, check_quota
from oauthproxy.tenancy.records import Holdings, routes_naming_proxy, routes_naming_service
from oauthproxy.tenancy.services import check_registry, registry_host
from oauthproxy.tenancy.targets import (
    Address,
    Destination,
    Network,
    ResolvedAddress,
    TargetPolicy,
    check_destination,
    literal_address,
    on_this_host,
    parse_networks,
    port_destination,
    url_destination,
)

R = TypeVar("R", bound=BaseModel)

Json = dict[str, Any]

RESOLVE_TIMEOUT_SECONDS = 3.0
"""How long a target's name may take to resolve before it is let through unchecked."""

OWNER_WAIT_SECONDS = 10.0
"""How long a write waits for another checked write of the same owner to finish."""

SERVICE_WAIT_SECONDS = 60.0
"""How long a change of a Docker service waits for another one (a recreate) to finish."""


def storage() -> Storage:
    return app_state(current_app).storage


def as_json(model: BaseModel) -> Json:
    return model.model_dump(mode="json")


def caller() -> Caller:
    """The calling token, as the rules see it."""
    return Caller.of(current_token())


def ownership() -> dict[str, str]:
    """The owner fields of a record the caller creates."""
    token = current_token()
    return {"owner_token_hash": token.hash, "created_by": token.name}


def require_owner(owner_token_hash: str | None, *, field: str, what: str) -> None:
    """Refuse (403) unless the caller owns the record or is the admin (certificates' rule until
    it moves to `tenancy`)."""
    if not caller().owns(owner_token_hash):
        raise forbidden(f"only the owner of {what} or the admin may change it", field=field)


def patched(record: R, changes: dict[str, Any]) -> R:
    """`record` with `changes` applied and validated as a whole (422 naming the bad field)."""
    try:
        return type(record).model_validate({**record.model_dump(), **changes})
    except ValidationError as error:
        problems = field_problems(error)
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        raise ApiError(422, "validation_error", summary, field=problems[0]["field"]) from None


# --- facts for the rules ---------------------------------------------------------------------


async def holdings(who: Caller) -> Holdings:
    """The proxies and services the caller owns (nothing to gather for the admin)."""
    if who.is_admin:
        return Holdings(proxies=frozenset(), services=frozenset())
    proxies = await storage().proxies.owned_by(who.token_hash)
    services = await storage().external_services.owned_by(who.token_hash)
    docker = await storage().docker_services.owned_by(who.token_hash)
    names = [s.service_name for s in services] + [s.service_name for s in docker]
    return Holdings(proxies=frozenset(p.hostname for p in proxies), services=frozenset(names))


def reserved_hostnames() -> frozenset[str]:
    """The hostnames the gateway answers for itself: API_HOSTNAMES and the OAuth issuer's."""
    settings = app_state(current_app).settings
    issuer = urlsplit(settings.oauth_issuer_url).hostname
    names = [*settings.api_hostnames, *([issuer] if issuer else [])]
    return frozenset(name.lower().rstrip(".") for name in names)


HOSTS_FILE = Path("/etc/hosts")


async def local_hostnames() -> frozenset[str]:
    """The names this host resolves itself, lower-case: localhost, its own hostname, and the
    names in the first 64 KiB of /etc/hosts (read each time, off the event loop: it is small,
    and a container's changes)."""
    names = {"localhost", socket.gethostname().lower()}
    for line in (await trio.to_thread.run_sync(_hosts_file)).splitlines():
        names.update(name.lower() for name in line.partition("#")[0].split()[1:])
    return frozenset(names)


def _hosts_file() -> str:
    try:
        with HOSTS_FILE.open("rb") as hosts:
            return hosts.read(65536).decode(errors="replace")
    except OSError:
        return ""


def api_hostnames() -> frozenset[str]:
    """API_HOSTNAMES: the admin API answers them on the public ports, never a proxy."""
    settings = app_state(current_app).settings
    return frozenset(name.lower().rstrip(".") for name in settings.api_hostnames)


def target_policy() -> TargetPolicy:
    state = app_state(current_app)
    return TargetPolicy(
        denied_networks=parse_networks(state.settings.owner_target_deny_networks),
        gateway_ports=state.listeners.known(state.settings),
    )


async def check_url_target(field: str, url: object) -> None:
    """Refuse an owner token's URL target that reaches the gateway or a denied network."""
    await check_target(url_destination(field, str(url)))


async def check_route_target(route: Route) -> None:
    """A route's `url` and `port` targets are checked like any URL; `hostname` and `service`
    targets are checked by ownership (`tenancy.records.check_route`)."""
    if route.target_type is TargetType.URL:
        await check_url_target("target_value", route.target_value)
    elif route.target_type is TargetType.PORT:
        await check_target(port_destination("target_value", route.target_value))


async def check_target(destination: Destination) -> None:
    who = caller()
    if who.is_admin:
        return
    addresses = await _resolve(destination.host)
    found = [ResolvedAddress(address, _is_local(address)) for address in addresses]
    policy = target_policy()
    containers = await _container_networks()
    if containers:
        policy = replace(policy, denied_networks=policy.denied_networks + containers)
    check_destination(who, policy, destination, found)
    if any(on_this_host(resolved) for resolved in found):
        holder = await storage().ports.holder(destination.port)
        if holder is not None:
            check_port_target(who, destination, holder)


async def check_image_registry(image: str | None) -> None:
    """An owner token's image comes from a registry OWNER_IMAGE_REGISTRIES lists, when it
    lists any, and from one whose name resolves only to public addresses of other hosts: the
    engine speaks plain HTTP to a loopback registry, on a path the owner chooses, and reaches
    private networks no owner target may (`127.1:5000/x`, `localhost.:5000/x`, a name in
    /etc/hosts or in private DNS; 403 naming `image`). The engine resolves the name again when
    it pulls: only the list closes that gap for names whose answers can change."""
    who = caller()
    if who.is_admin or image is None:
        return
    check_registry(who, image, app_state(current_app).settings.owner_image_registries)
    host = registry_host(image)
    if host is None:  # the default registry
        return
    addresses = await _resolve(host)
    private = [address for address in addresses if not address.is_global or _is_local(address)]
    if private:
        raise forbidden(
            f"image: the registry {host} resolves to {private[0]}, on this machine or a private "
            "network: only the admin token may pull from it",
            field="image",
        )


ENGINE_TIMEOUT_SECONDS = 5.0


async def _container_networks() -> tuple[Network, ...]:
    """The Docker engine's networks: a container is reached through its service (a `service`
    route, checked by ownership), never by address, or an owner could proxy to another
    owner's container past its routes, auth and port grants. (An engine that does not answer
    in time has no containers this gateway could reach through it either way.)"""
    docker = app_state(current_app).docker
    if docker is None:
        return ()
    try:
        with trio.fail_after(ENGINE_TIMEOUT_SECONDS):
            subnets = await docker.subnets()
    except (EngineUnavailable, EngineError, trio.TooSlowError):
        return ()
    return parse_networks(subnets)


async def _resolve(host: str) -> list[Address]:
    """The addresses `host` stands for now; none when it does not resolve in time."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    infos: list[Any] = []
    with trio.move_on_after(RESOLVE_TIMEOUT_SECONDS):
        for name in dict.fromkeys([host, host.rstrip(".")]):  # `localhost.` as `localhost` too
            infos += await _address_infos(name)
    found = (literal_address(str(info[4][0])) for info in infos)
    return list(dict.fromkeys(address for address in found if address is not None))


async def resolves(host: str) -> bool:
    """Whether `host` stands for an address now (bounded like every target check)."""
    return bool(await _resolve(host))


async def _address_infos(name: str) -> list[Any]:
    try:
        return list(await trio.socket.getaddrinfo(name, None, type=socket.SOCK_STREAM))
    except (socket.gaierror, UnicodeError):
        return []


def _is_local(address: Address) -> bool:
    """Whether `address` is one of this host's: only then can a socket bind to it."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


# --- quotas and the owner lock ---------------------------------------------------------------


def _quotas() -> Quotas:
    settings = app_state(current_app).settings
    return Quotas(
        limits={
            Quota.PROXIES: settings.token_max_proxies,
            Quota.ROUTES: settings.token_max_routes,
            Quota.SERVICES: settings.token_max_services,
            Quota.PORTS: settings.token_max_ports,
        }
    )


async def _owned_count(quota: Quota, owner_hash: str) -> int:
    match quota:
        case Quota.PROXIES:
            return len(await storage().proxies.owned_by(owner_hash))
        case Quota.ROUTES:
            return len(await storage().routes.owned_by(owner_hash))
        case Quota.SERVICES:
            external = await storage().external_services.owned_by(owner_hash)
            return len(external) + len(await storage().docker_services.owned_by(owner_hash))
        case Quota.PORTS:
            held = await storage().ports.all()
            return sum(1 for port in held if port.owner_token_hash == owner_hash)


@asynccontextmanager
async def owner_serialized(owner_hash: str | None) -> AsyncIterator[None]:
    """Hold `owner_hash`'s lock for the block (nothing when None: the admin's records), so the
    checks made in the block still hold when its write lands."""
    if owner_hash is None:
        yield
        return
    busy = "another change of this owner's records is still running; try again"
    async with _holding(owner_locks(storage().redis), owner_hash, OWNER_WAIT_SECONDS, busy):
        yield


@asynccontextmanager
async def service_serialized(name: str) -> AsyncIterator[None]:
    """Hold the Docker service's lock for the block: its container is changed (recreated,
    started, stopped, removed) by one request at a time, on every replica."""
    busy = f"another change of the service {name!r} is still running; try again"
    async with _holding(service_locks(storage().redis), name, SERVICE_WAIT_SECONDS, busy):
        yield


@asynccontextmanager
async def _holding(locks: Locks, name: str, wait: float, busy: str) -> AsyncIterator[None]:
    try:
        with trio.fail_after(wait):
            holder = await locks.acquire(name)
    except trio.TooSlowError:
        raise ApiError(409, "conflict", busy) from None
    try:
        yield
    finally:
        await locks.release_on_the_way_out(name, holder)


def tenant_of(who: Caller) -> str | None:
    """The owner hash to serialise the caller's own writes on; None for the admin."""
    return None if who.is_admin else who.token_hash


async def check_unclaimed_by_routes(kind: str, name: str, field: str) -> None:
    """409 `in_use` for an owner token's new proxy or service whose name one of the admin's
    routes names (another owner's routes name only that owner's records, which exist): a route
    of the admin's that sent `/shared/` of every hostname to a proxy or service it then deleted
    sent those requests, every owner's visitors', to whichever owner claimed the name next."""
    if caller().is_admin:
        return
    routes = {route.route_id: route for route in await storage().routes.all()}
    naming = routes_naming_proxy if kind == "proxy" else routes_naming_service
    owners = {routes[route_id].owner_token_hash for route_id in naming(routes.values(), name)}
    if [owner for owner in owners if await storage().tokens.is_admins(owner)]:
        raise ApiError(
            409,
            "in_use",
            f"the gateway's routes name the {kind} {name}: choose another {field}",
            field=field,
        )


async def tenant_owning(owner_hash: str | None) -> str | None:
    """`owner_hash` when it is an owner token's (not the admin's, not a record without owner)."""
    if owner_hash is None:
        return None
    who = caller()
    if who.token_hash == owner_hash:
        return tenant_of(who)
    token = await storage().tokens.by_hash(owner_hash)
    return None if token is None or token.is_admin else owner_hash


@asynccontextmanager
async def quota_slot(quota: Quota) -> AsyncIterator[None]:
    """`tenant_quota_slot` for a record of the caller's own (the admin: no lock, no quota)."""
    async with tenant_quota_slot(quota, tenant_of(caller())):
        yield


@asynccontextmanager
async def tenant_quota_slot(quota: Quota, tenant: str | None) -> AsyncIterator[None]:
    """Hold `tenant`'s owner lock, refuse when its `quota` is used up (unless the admin token
    asks), and let the block check and store the new record before any other write of that
    owner. None (the admin's records): no lock, no quota."""
    async with owner_serialized(tenant):
        if tenant is not None:
            check_quota(caller(), _quotas(), quota, await _owned_count(quota, tenant))
        yield
