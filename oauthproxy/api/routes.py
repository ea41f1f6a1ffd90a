"""`/api/v1/routes/`: priority-ordered path rules. Any token reads them; a route's creator or the
admin changes it. Every write announces itself with a `routes_changed` event (see storage)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from quart import Blueprint
from quart_schema import document_response, validate_querystring, validate_request

from oauthproxy.api.auth import requires_token
from oauthproxy.api.ownership import Json, as_json, ownership, patched, require_owner, storage
from oauthproxy.errors import NotFound
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
    require_owner(route.owner_token_hash, field="route_id", what=f"route {route.route_id}")
    return route


async def _find(route_id: str) -> Route:
    route = await _repository().get(_route_id(route_id))
    if route is None:
        raise NotFound("route", route_id)
    return route


@routes.get("/")
@requires_token()
@validate_querystring(RouteListQuery)
@document_response(list[Route])
async def list_routes(query_args: RouteListQuery) -> list[Json]:
    """List routes, highest priority first; `?scope=global|proxy` keeps one scope."""
    found = await _repository().all()
    return [as_json(route) for route in found if query_args.scope in (None, route.scope)]


@routes.get("/formatted")
@requires_token()
async def formatted_routes() -> tuple[str, int, dict[str, str]]:
    """Every route as a plain-text table, for people."""
    text = routes_as_text(await _repository().all())
    return text, 200, {"Content-Type": "text/plain; charset=utf-8"}


@routes.post("/")
@requires_token()
@validate_request(RouteCreate)
@document_response(Route, 201)
async def create_route(data: RouteCreate) -> tuple[Json, int]:
    """Create a route owned by the calling token; without `route_id`, one is made from the path."""
    route_id = data.route_id or new_route_id(data.path_pattern)
    route = Route(**{**data.model_dump(), "route_id": route_id, **ownership()})
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
    """Change the given fields of a route (its owner or the admin)."""
    changes = data.model_dump(exclude_unset=True)
    updated = await _repository().modify(
        _route_id(route_id), lambda stored: patched(_owned(stored), changes)
    )
    return as_json(updated)


@routes.delete("/<route_id>")
@requires_token()
@document_response(Route)
async def delete_route(route_id: str) -> Json:
    """Delete a route (its owner or the admin); returns what was deleted."""
    return as_json(await _repository().delete(_route_id(route_id), check=_owned))
