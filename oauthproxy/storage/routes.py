"""`route:{id}` with its indexes `route:unique:{path}:{prio}` and `route:priority:{prio}:{id}`."""

from __future__ import annotations

from oauthproxy.errors import Conflict
from oauthproxy.models.routes import Route
from oauthproxy.storage import keys
from oauthproxy.storage.base import JsonRepository, Pipeline, Redis, dump, translate_errors

# Write the route and both indexes only if the id and the (path, priority) pair are both free.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'route_id' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'path_pattern' end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[2])
return 'ok'
"""


@translate_errors
class RouteRepository(JsonRepository[Route]):
    model = Route
    prefix = keys.route("")
    skip = ("route:unique:", "route:priority:")

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self._create = redis.register_script(_CREATE)

    async def all(self) -> list[Route]:
        """Every route, highest priority first."""
        routes = await super().all()
        return sorted(routes, key=lambda route: (-route.priority, route.route_id))

    async def create(self, route: Route) -> None:
        outcome: str = await self._create(
            keys=[
                keys.route(route.route_id),
                keys.route_unique(route.path_pattern, route.priority),
                keys.route_priority(route.priority, route.route_id),
            ],
            args=[dump(route), route.route_id],
        )
        if outcome == "route_id":
            raise Conflict("route_id", f"a route with id {route.route_id!r} already exists")
        if outcome == "path_pattern":
            raise Conflict(
                "path_pattern",
                f"a route for {route.path_pattern!r} at priority {route.priority} already exists",
            )

    @staticmethod
    def queue_delete(pipe: Pipeline, route: Route) -> None:
        pipe.delete(
            [
                keys.route(route.route_id),
                keys.route_unique(route.path_pattern, route.priority),
                keys.route_priority(route.priority, route.route_id),
            ]
        )

    @staticmethod
    def watched_keys(route: Route) -> list[str]:
        return [keys.route(route.route_id)]
