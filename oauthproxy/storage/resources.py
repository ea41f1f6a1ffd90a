"""`resource:{uri}`: protected resources registered with the authorization server (MCP servers)."""

from __future__ import annotations

from coredis import PureToken

from oauthproxy.errors import Conflict, NotFound
from oauthproxy.models.resources import ProtectedResource
from oauthproxy.storage import keys
from oauthproxy.storage.base import JsonRepository, dump, load, translate_errors


@translate_errors
class ResourceRepository(JsonRepository[ProtectedResource]):
    model = ProtectedResource
    prefix = keys.resource("")

    async def all(self) -> list[ProtectedResource]:
        """Every registered resource, by URI."""
        return sorted(await super().all(), key=lambda resource: resource.uri)

    async def create(self, resource: ProtectedResource) -> None:
        """Store a new resource; `Conflict` when its URI is registered already."""
        key = self.key(resource.uri)
        if not await self._redis.set(key, dump(resource), condition=PureToken.NX):
            raise Conflict("uri", f"a resource with uri {resource.uri!r} is registered already")

    async def replace(self, resource: ProtectedResource) -> None:
        """Store `resource` over the registered one of its URI; `NotFound` when there is none."""
        stored = await self._redis.set(
            self.key(resource.uri), dump(resource), condition=PureToken.XX
        )
        if not stored:
            raise NotFound("resource", resource.uri)

    async def delete(self, uri: str) -> ProtectedResource:
        """Remove a resource; returns what was removed."""
        removed = load(self.model, await self._redis.getdel(self.key(uri)))
        if removed is None:
            raise NotFound("resource", uri)
        return removed
