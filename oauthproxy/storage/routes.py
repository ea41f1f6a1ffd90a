"""`route:{id}` with its indexes `route:unique:{path}:{prio}[:{owner}]` and
`route:priority:{prio}:{id}`.

Every write changes the route and both indexes in one MULTI/EXEC under WATCH, together with a
`routes_changed` event for every instance, so the indexes never disagree with the routes and no
change goes unannounced.

A (path, priority) pair is unique among the routes of one owner: an owner's routes apply to its
own hostnames only, so two owners' routes never compete for a request, and a pair taken by one
owner must neither be refused to another nor tell it what the first one routes.
"""

from __future__ import annotations

from collections.abc import Callable

from oauthproxy.errors import Conflict
from oauthproxy.models.events import ALL_HOSTS, EventType
from oauthproxy.models.routes import Route
from oauthproxy.storage import keys
from oauthproxy.storage.base import Pipeline, atomically, dump, load, translate_errors
from oauthproxy.storage.editing import EditableRepository, anyone
from oauthproxy.storage.events import queue_event

RouteChange = Callable[[Route], Route]
"""The route as it should be, given the stored one; raises to refuse."""

RouteCheck = Callable[[Route], object]
"""Raises when the caller may not touch this route."""


def unique_key(route: Route) -> str:
    return keys.route_unique(route.path_pattern, route.priority, route.owner_token_hash)


def _legacy_unique_key(route: Route) -> str:
    """Where a gateway before owner-scoped pairs kept an owned route's pair."""
    return keys.route_unique(route.path_pattern, route.priority)


def _index_keys(route: Route) -> list[str]:
    return [unique_key(route), keys.route_priority(route.priority, route.route_id)]


def _queue_put(pipe: Pipeline, route: Route) -> None:
    pipe.mset(
        {
            keys.route(route.route_id): dump(route),
            **dict.fromkeys(_index_keys(route), route.route_id),
        }
    )


def _queue_changed(pipe: Pipeline, route: Route, change: str) -> None:
    queue_event(pipe, EventType.ROUTES_CHANGED, ALL_HOSTS, route_id=route.route_id, change=change)


def _path_taken(route: Route, field: str) -> Conflict:
    return Conflict(
        field, f"a route for {route.path_pattern!r} at priority {route.priority} already exists"
    )


def _moved_field(stored: Route, route: Route) -> str:
    """Which field moved a route onto a taken (path, priority) pair."""
    return "path_pattern" if stored.path_pattern != route.path_pattern else "priority"


@translate_errors
class RouteRepository(EditableRepository[Route]):
    model = Route
    prefix = keys.route("")
    skip = ("route:unique:", "route:priority:")
    kind = "route"

    async def all(self) -> list[Route]:
        """Every route, highest priority first."""
        routes = await super().all()
        return sorted(routes, key=lambda route: (-route.priority, route.route_id))

    async def create(self, route: Route) -> None:
        """Store a new route; its id and its (path, priority) pair must both be free."""
        route_key = keys.route(route.route_id)

        async def write(pipe: Pipeline) -> None:
            if await self._redis.exists([route_key]):
                raise Conflict("route_id", f"a route with id {route.route_id!r} already exists")
            if await self._redis.exists([unique_key(route)]):
                raise _path_taken(route, "path_pattern")
            _queue_put(pipe, route)
            _queue_changed(pipe, route, "created")

        await atomically(self._redis, [route_key, unique_key(route)], write)

    async def modify(self, route_id: str, change: RouteChange) -> Route:
        """Replace the route with `change(stored)`, moving its indexes if its path or priority
        moved; `NotFound` when there is no such route (any more)."""

        async def write(pipe: Pipeline, stored: Route) -> Route:
            updated = change(stored)
            if unique_key(updated) != unique_key(stored):
                if await self._redis.exists([unique_key(updated)]):
                    raise _path_taken(updated, _moved_field(stored, updated))
                pipe.delete(_index_keys(stored))
            _queue_put(pipe, updated)
            _queue_changed(pipe, updated, "updated")
            return updated

        return await self._edit(route_id, write, lambda stored: [unique_key(change(stored))])

    async def update(self, route: Route) -> None:
        """Store `route` over the route of its id if that still exists."""
        await self.modify(route.route_id, lambda _stored: route)

    async def delete(self, route_id: str, *, check: RouteCheck = anyone) -> Route:
        """Delete a route and its indexes; returns what was deleted. `check` may raise to refuse."""

        async def remove(pipe: Pipeline, stored: Route) -> Route:
            check(stored)
            self.queue_delete(pipe, stored)
            return stored

        return await self._edit(route_id, remove)

    async def move_owned_pairs(self) -> int:
        """Move the (path, priority) index of every owned route that a gateway before
        owner-scoped pairs kept under the shared key to its owner's key; how many moved. Run
        at start-up, before the API takes a change; safe to run by several gateways at once."""
        owned = [route for route in await self.all() if route.owner_token_hash]
        if not owned:
            return 0
        legacy = await self._redis.mget([_legacy_unique_key(route) for route in owned])
        moved = 0
        for route, holder in zip(owned, legacy, strict=True):
            if holder != route.route_id:
                continue
            watched = [keys.route(route.route_id), _legacy_unique_key(route), unique_key(route)]

            async def write(pipe: Pipeline, seen: Route = route) -> bool:
                stored = load(Route, await self._redis.get(keys.route(seen.route_id)))
                if stored != seen:
                    return False  # changed or gone since it was listed: the next start looks again
                if await self._redis.get(_legacy_unique_key(seen)) != seen.route_id:
                    return False
                pipe.delete([_legacy_unique_key(seen)])
                pipe.set(unique_key(seen), seen.route_id)
                return True

            moved += await atomically(self._redis, watched, write)
        return moved

    @staticmethod
    def queue_delete(pipe: Pipeline, route: Route) -> None:
        pipe.delete([keys.route(route.route_id), *_index_keys(route)])
        _queue_changed(pipe, route, "deleted")

    @staticmethod
    def watched_keys(route: Route) -> list[str]:
        return [keys.route(route.route_id)]
