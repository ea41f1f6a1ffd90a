"""`/api/v1/routes/`: priority-ordered path rules. Every write announces itself with a
`routes_changed` event (see storage).

The tenant model (`oauthproxy.tenancy`) decides who sees and changes which route and what a route
may name: an owner token sees only its own routes (another's reads as 404), creates only routes
scoped to its own proxies, aimed at its own proxies and services or at addresses it may target.
Global routes are the admin's."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from quart import Blueprint
from quart_schema import document_response, validate_querystring, validate_request

from oauthproxy.api.auth import requires_token
from oauthproxy.api.contract import Answer, answers
from oauthproxy.api.ownership import (
    Json,
    as_json,
    caller,
    check_route_target,
    holdings,
    owner_serialized,
    ownership,
    patched,
    quota_slot,
    storage,
    tenant_of,
)
from oauthproxy.errors import Conflict, NotFound
from oauthproxy.models.routes import (
    Route,
    RouteCreate,
    RouteListQuery,
    RouteScope,
    RouteUpdate,
    is_route_id,
    new_route_id,
)
from oauthproxy.storage.routes import RouteRepository
from oauthproxy.tenancy.quotas import Quota
from oauthproxy.tenancy.records import (
    Holdings,
    changeable,
    check_regex_budget,
    check_route,
    readable,
    visible,
)

routes = Blueprint("routes", __name__, url_prefix="/api/v1/routes")


def _path_cell(route: Route) -> str:
    return f"{route.path_pattern} (regex)" if route.is_regex else route.path_pattern


def _scope_cell(route: Route) -> str:
    return ",".join(route.proxy_hostnames) if route.scope is RouteScope.PROXY else "global"


TEXT_COLUMNS: tuple[tuple[str, Callable[[Route], str]], ...] = (
    ("ID", lambda route: route.route_id),
    ("PATH", _path_cell),
    ("TARGET", lambda route: f"{route.target_type}:{route.target_value}"),
    ("PRIORITY", lambda route: str(route.priority)),
    ("METHODS", lambda route: ",".join(route.methods or ["*"])),
    ("SCOPE", _scope_cell),
    ("ENABLED", lambda route: "yes" if route.enabled else "no"),
    ("DESCRIPTION", lambda route: route.description),
)


def routes_as_text(found: Iterable[Route]) -> str:
    """A plain-text table with a header row, one row per route and a count."""
    rows = [[header for header, _ in TEXT_COLUMNS]]
    rows += [[cell(route) for _, cell in TEXT_COLUMNS] for route in found]
    widths = [max(len(value) for value in column) for column in zip(*rows, strict=True)]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    count = len(rows) - 1
    return "\n".join([*lines, "", f"{count} route{'' if count == 1 else 's'}"]) + "\n"


def _repository() -> RouteRepository:
    return storage().routes


def _route_id(raw: str) -> str:
    """`raw` if it could name a route; anything else (`priority:90:api`) names no route."""
    if not is_route_id(raw):
        raise NotFound("route", raw)
    return raw


def _owned(route: Route) -> Route:
    return changeable(caller(), route, "route", route.route_id)


async def _find(route_id: str) -> Route:
    return readable(caller(), await _repository().get(_route_id(route_id)), "route", route_id)


async def _visible_routes() -> list[Route]:
    return visible(caller(), await _repository().all())


async def _check_regex_budget(route: Route) -> None:
    """Under the owner's lock: its regex routes with `route` stay within their budget."""
    who = caller()
    if who.is_admin or not route.is_regex:
        return
    check_regex_budget(who, route, await _repository().owned_by(who.token_hash))


def _allowed(route: Route, held: Holdings) -> Route:
    """`route` when the caller may hold it as it is (scope, hostnames, hostname/service target)."""
    check_route(caller(), route, held)
    return route


@routes.get("/")
@requires_token()
@validate_querystring(RouteListQuery)
@document_response(list[Route])
async def list_routes(query_args: RouteListQuery) -> list[Json]:
    """List the routes the caller may see, highest priority first; `?scope=global|proxy` keeps
    one scope."""
    found = await _visible_routes()
    return [as_json(route) for route in found if query_args.scope in (None, route.scope)]


@routes.get("/formatted")
@requires_token()
@answers(Answer("200", "The routes as a plain-text table", "text/plain"))
async def formatted_routes() -> tuple[str, int, dict[str, str]]:
    """The routes the caller may see as a plain-text table, for people."""
    text = routes_as_text(await _visible_routes())
    return text, 200, {"Content-Type": "text/plain; charset=utf-8"}


@routes.post("/")
@requires_token()
@validate_request(RouteCreate)
@document_response(Route, 201)
async def create_route(data: RouteCreate) -> tuple[Json, int]:
    """Create a route owned by the calling token; without `route_id`, one is made from the path."""
    route_id = data.route_id or new_route_id(data.path_pattern)
    route = Route(**{**data.model_dump(), "route_id": route_id, **ownership()})
    await check_route_target(route)
    async with quota_slot(Quota.ROUTES):
        _allowed(route, await holdings(caller()))
        await _check_regex_budget(route)
        await _repository().create(route)
    return as_json(route), 201


@routes.get("/<route_id>")
@requires_token()
@document_response(Route)
async def get_route(route_id: str) -> Json:
    """One route."""
    return as_json(await _find(route_id))


@routes.put("/<route_id>")
@requires_token()
@validate_request(RouteUpdate)
@document_response(Route)
async def update_route(route_id: str, data: RouteUpdate) -> Json:
    """Change the given fields of a route (its owner or the admin); the route as it would be
    stored is checked like a new one."""
    changes = data.model_dump(exclude_unset=True)
    who = caller()
    async with owner_serialized(tenant_of(who)):
        # The target is checked on the route these changes apply to, and the write lands only
        # on that very route: checked outside the lock, one update's `target_type: port` and
        # another's `target_value` (a service named `9000`) each passed on their own, and
        # together aimed the route at the admin API's port.
        seen = await _find(route_id)
        await check_route_target(patched(seen, changes))
        await _check_regex_budget(patched(seen, changes))
        held = await holdings(who)

        def change(stored: Route) -> Route:
            if stored != seen:
                raise Conflict("route_id", "the route changed while this update was checked")
            return _allowed(patched(_owned(stored), changes), held)

        updated = await _repository().modify(_route_id(route_id), change)
    return as_json(updated)


@routes.delete("/<route_id>")
@requires_token()
@document_response(Route)
async def delete_route(route_id: str) -> Json:
    """Delete a route (its owner or the admin); returns what was deleted."""
    return as_json(await _repository().delete(_route_id(route_id), check=_owned))
