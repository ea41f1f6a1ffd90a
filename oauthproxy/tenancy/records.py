"""Who may read, create, change and delete proxies, routes, services and resources.

A record belongs to the token that created it (`owner_token_hash`); the admin token owns all.
An owner token sees only its own records: another owner's record reads as missing (404, the same
answer as a record that does not exist), so a token cannot learn what others have configured. A
record it creates may only point at its own things: a route only at hostnames it owns, a route's
`hostname` target only at its own proxy, a `service` target only at its own service. Global
routes, which apply to every hostname, and the registry of protected resources are the admin's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from oauthproxy.errors import NotFound
from oauthproxy.linear_regex import OWNER_PROGRAM_BUDGET, compile_linear
from oauthproxy.models.routes import Route, RouteScope, TargetType
from oauthproxy.tenancy.caller import Caller, Refused, forbidden


class Owned(Protocol):
    @property
    def owner_token_hash(self) -> str | None: ...


R = TypeVar("R", bound=Owned)


def visible(caller: Caller, records: Iterable[R]) -> list[R]:
    """The records the caller may list: all for the admin, its own for an owner token."""
    return [record for record in records if caller.owns(record.owner_token_hash)]


def readable(caller: Caller, record: R | None, kind: str, name: str) -> R:
    """`record` when the caller may read it; `NotFound` when it is missing or another owner's."""
    if record is None or not caller.owns(record.owner_token_hash):
        raise NotFound(kind, name)
    return record


def changeable(caller: Caller, record: R, kind: str, name: str) -> R:
    """`record` when the caller may change or delete it: the same rule as reading, so another
    owner's record is as missing for a change as for a read."""
    return readable(caller, record, kind, name)


def check_new_proxy(
    caller: Caller,
    hostname: str,
    reserved: frozenset[str],
    api_hostnames: frozenset[str] = frozenset(),
) -> None:
    """Refuse (403) an owner token's proxy for a hostname the gateway serves itself: the admin
    API's hostnames and the OAuth issuer's, whose requests carry every owner's tokens. Refuse
    (409) anyone's proxy for an API hostname: the admin API answers it on the public ports,
    so the proxy would never be used."""
    if hostname in api_hostnames:
        raise Refused(
            409,
            "hostname_reserved",
            f"{hostname} is in API_HOSTNAMES: its requests on the public ports go to the admin "
            "API, so a proxy for it would never be used; choose another hostname, or remove "
            "it from API_HOSTNAMES",
            field="hostname",
        )
    if not caller.is_admin and hostname in reserved:
        raise forbidden(
            f"{hostname} is the gateway's own hostname: only the admin token may proxy it",
            field="hostname",
        )


@dataclass(frozen=True)
class Holdings:
    """What the caller owns that a route may name."""

    proxies: frozenset[str]
    services: frozenset[str]


def check_route(caller: Caller, route: Route, holdings: Holdings) -> None:
    """Refuse (403) a route the caller may not hold: a global one, one on hostnames it does not
    own, or one whose `hostname`/`service` target is not its own. Checked on create and on
    every update (on the route as it would be stored)."""
    if caller.is_admin:
        return
    if route.scope is RouteScope.GLOBAL:
        raise forbidden(
            "a global route applies to every hostname: only the admin token may create one; "
            "use scope proxy with your own proxy_hostnames",
            field="scope",
        )
    foreign = [host for host in route.proxy_hostnames if host not in holdings.proxies]
    if foreign:
        raise forbidden(
            f"proxy_hostnames: {foreign[0]} is not a proxy of this token", field="proxy_hostnames"
        )
    if route.target_type is TargetType.HOSTNAME and route.target_value not in holdings.proxies:
        raise forbidden(
            f"target_value: {route.target_value} is not a proxy of this token",
            field="target_value",
        )
    if route.target_type is TargetType.SERVICE and route.target_value not in holdings.services:
        raise forbidden(
            f"target_value: {route.target_value!r} is not a service of this token",
            field="target_value",
        )


def check_regex_budget(caller: Caller, route: Route, others: Iterable[Route]) -> None:
    """Refuse (422 on path_pattern) an owner token's regex route when its regex routes together,
    `others` (the owner's routes; the route itself there is replaced) and `route`, would
    compile to more than OWNER_PROGRAM_BUDGET instructions: each request to the owner's proxies
    may run them all (see `oauthproxy.linear_regex`). The admin is exempt."""
    if caller.is_admin or not route.is_regex:
        return
    patterns = [r.path_pattern for r in others if r.is_regex and r.route_id != route.route_id]
    used = sum(_program_size(pattern) for pattern in patterns)
    size = _program_size(route.path_pattern)
    if used + size > OWNER_PROGRAM_BUDGET:
        raise Refused(
            422,
            "validation_error",
            f"path_pattern: this token's regex routes would compile to {used + size} RE2 "
            f"instructions together ({size} for this one), at most {OWNER_PROGRAM_BUDGET}: "
            "use simpler patterns (+ or * rather than large counts), or prefixes",
            field="path_pattern",
        )


def _program_size(pattern: str) -> int:
    try:
        return compile_linear(pattern).programsize
    except ValueError:
        return 0  # (a stored pattern no longer accepted matches nothing: it costs nothing)


def routes_naming_proxy(routes: Iterable[Route], hostname: str) -> list[str]:
    """The ids of the routes scoped to `hostname` or sending requests to its proxy."""
    return [
        route.route_id
        for route in routes
        if hostname in route.proxy_hostnames
        or (route.target_type is TargetType.HOSTNAME and route.target_value == hostname)
    ]


def routes_naming_service(routes: Iterable[Route], name: str) -> list[str]:
    return [
        route.route_id
        for route in routes
        if route.target_type is TargetType.SERVICE and route.target_value == name
    ]


def check_unreferenced(kind: str, name: str, field: str, route_ids: list[str]) -> None:
    """Refuse (409 `in_use`) deleting an owner's proxy or service while routes of the same owner
    still name it: once deleted, the name is free for another owner to claim, and those routes
    would then apply to, or send traffic into, that owner's hostname or service."""
    if route_ids:
        listed = ", ".join(route_ids)
        raise Refused(
            409,
            "in_use",
            f"routes of the same owner still name {kind} {name}: {listed}; "
            "delete them or change them first",
            field=field,
        )
