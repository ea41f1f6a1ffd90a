"""Repositories against a real Redis: the key schema, atomic multi-key writes, error translation."""

from __future__ import annotations

import anyio
import pytest
import trio

from oauthproxy.errors import Conflict, StorageUnavailable
from oauthproxy.models.certificates import Certificate
from oauthproxy.models.routes import Route, TargetType
from oauthproxy.storage import Storage, keys, open_storage
from oauthproxy.storage.base import translate_errors
from oauthproxy.storage.tokens import hash_secret, new_token
from tests.conftest import free_port


async def test_token_is_stored_under_both_keys(storage: Storage) -> None:
    token = new_token("ops", cert_email="ops@example.com")
    await storage.tokens.create(token)
    assert token.hash == hash_secret(token.token)
    assert token.hash.startswith("sha256:") and len(token.hash) == 7 + 64
    assert await storage.redis.get(keys.token_hash(token.hash)) == "ops"
    assert await storage.tokens.get("ops") == token
    assert await storage.tokens.authenticate(token.token) == token
    assert await storage.tokens.authenticate(token.token + "x") is None


async def test_replacing_a_secret_drops_the_old_one(storage: Storage) -> None:
    first = new_token("admin", is_admin=True)
    await storage.tokens.put(first)
    second = new_token("admin", is_admin=True)
    await storage.tokens.put(second)
    assert await storage.tokens.authenticate(first.token) is None
    assert await storage.tokens.authenticate(second.token) == second
    assert await storage.redis.exists([keys.token_hash(first.hash)]) == 0


async def test_a_secret_cannot_belong_to_two_tokens(storage: Storage) -> None:
    first = new_token("one")
    await storage.tokens.create(first)
    with pytest.raises(Conflict) as caught:
        await storage.tokens.put(new_token("two", secret=first.token))
    assert caught.value.field == "token"
    assert await storage.tokens.get("two") is None


async def test_route_indexes_are_written_together_and_unique(storage: Storage) -> None:
    route = Route(
        route_id="api",
        path_pattern="/api/",
        target_type=TargetType.PORT,
        target_value="3000",
        priority=90,
    )
    await storage.routes.create(route)
    assert await storage.redis.get(keys.route_unique("/api/", 90)) == "api"
    assert await storage.redis.get(keys.route_priority(90, "api")) == "api"
    same_path = route.model_copy(update={"route_id": "api2"})
    with pytest.raises(Conflict) as caught:
        await storage.routes.create(same_path)
    assert caught.value.field == "path_pattern"
    assert await storage.redis.exists([keys.route("api2"), keys.route_priority(90, "api2")]) == 0
    with pytest.raises(Conflict):
        await storage.routes.create(route.model_copy(update={"priority": 10}))


async def test_routes_list_highest_priority_first(storage: Storage) -> None:
    for route_id, priority in [("low", 10), ("high", 95), ("mid", 50)]:
        await storage.routes.create(
            Route(
                route_id=route_id,
                path_pattern=f"/{route_id}",
                target_type=TargetType.URL,
                target_value="http://127.0.0.1:1",
                priority=priority,
            )
        )
    assert [r.route_id for r in await storage.routes.all()] == ["high", "mid", "low"]


async def test_certificate_domains_point_at_their_certificate(storage: Storage) -> None:
    cert = Certificate(cert_name="multi", domains=["a.example.com", "B.example.com."])
    await storage.certificates.put(cert)
    assert cert.domains == ["a.example.com", "b.example.com"]
    assert await storage.certificates.name_for_domain("b.example.com") == "multi"
    assert [c.cert_name for c in await storage.certificates.all()] == ["multi"]


async def test_unreachable_redis_is_a_storage_error() -> None:
    async with open_storage(f"redis://127.0.0.1:{free_port()}/0") as unreachable:
        with trio.fail_after(30), pytest.raises(StorageUnavailable):
            await unreachable.tokens.get("admin")


@translate_errors
class _Client:
    """A repository whose client fails the way coredis can: an error of its own for a
    cancellation (its pipeline's exit raises anyio.ClosedResourceError), or a lost connection."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def read(self) -> None:
        raise self.error


async def test_a_cancellation_the_client_turns_into_an_error_stays_a_cancellation() -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        await _Client(anyio.ClosedResourceError()).read()  # raises Cancelled, caught by `scope`
    assert scope.cancelled_caught
    with pytest.raises(anyio.ClosedResourceError):  # not cancelled: the error is the error
        await _Client(anyio.ClosedResourceError()).read()
    with pytest.raises(StorageUnavailable):
        await _Client(ConnectionRefusedError()).read()
