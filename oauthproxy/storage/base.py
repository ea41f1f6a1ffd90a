"""What every repository shares: the client type, JSON (de)serialisation, error translation, and
the one way a multi-key write meets a concurrent one (`atomically`, `retrying_conflicts`)."""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, TypeVar

import coredis
import coredis.exceptions
import trio
from coredis.exceptions import WatchError
from coredis.patterns.pipeline import Pipeline as _Pipeline
from pydantic import BaseModel

from oauthproxy.errors import StorageTimeout, StorageUnavailable, WriteContention

Redis = coredis.Redis[str]
Pipeline = _Pipeline[str]

M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C", bound=type)


CONFLICT_ATTEMPTS = 50
"""How often a write starts over because someone changed what it read. Each refused attempt
means another write landed, so only a key rewritten without pause exhausts them."""


async def retrying_conflicts(attempt: Callable[[], Awaitable[T]]) -> T:
    """Run `attempt` until its transaction commits, and answer what it answers.

    An attempt reads, WATCHes what its decision rests on, decides (and may raise `Conflict`,
    `NotFound`, ...) and queues its writes; Redis refuses the EXEC (`WatchError`) when a watched
    key changed meanwhile, and an attempt raises `WatchError` itself when what it read changed
    before it was watched. Either way the next attempt reads afresh, so the loser of a race gets
    the real answer (409 for a name now taken, 404 for a record now gone), never an error.
    """
    for _ in range(CONFLICT_ATTEMPTS):
        try:
            return await attempt()
        except WatchError:
            continue
    raise WriteContention(f"the records kept changing for {CONFLICT_ATTEMPTS} attempts")


async def atomically(
    redis: Redis, watched: list[str], write: Callable[[Pipeline], Awaitable[T]]
) -> T:
    """Run `write` in a MULTI/EXEC under WATCH of `watched`, again from the start whenever one
    of them changed meanwhile. `write` reads (through `redis`: the reads come after the WATCH,
    so they are covered by it), decides, and queues its writes on the transaction."""

    async def attempt() -> T:
        async with redis.pipeline(transaction=True) as pipe, pipe.watch(*watched):
            return await write(pipe)

    return await retrying_conflicts(attempt)


def translated(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """`method` with Redis and socket errors turned into `StorageUnavailable`."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except Exception as error:
            if trio.current_effective_deadline() == -math.inf:
                # We are being cancelled, and the client turned the cancellation into an error
                # of its own (coredis's pipeline exit raises anyio.ClosedResourceError): the
                # cancellation wins, so the task's owner sees a clean shutdown.
                await trio.lowlevel.checkpoint()
            if isinstance(error, TimeoutError):  # coredis's own response timeout
                raise StorageTimeout(f"redis: {error}") from error
            if isinstance(error, (coredis.exceptions.RedisError, OSError)):
                raise StorageUnavailable(f"redis: {type(error).__name__}: {error}") from error
            raise

    return wrapper


async def within(seconds: float, command: Awaitable[T]) -> T:
    """`command` (a repository call), or `StorageTimeout` once it has waited `seconds`
    (API_REDIS_TIMEOUT): for the data plane's few commands made while a request waits, on a
    client whose other commands (the workflow's blocking reads) must not time out. Cancelling a
    command is safe: coredis matches answers to requests in order on each connection, so a late
    answer goes to the abandoned request, not to the next command."""
    with trio.move_on_after(seconds):
        return await command
    raise StorageTimeout(f"redis did not answer within API_REDIS_TIMEOUT ({seconds:g} s)")


def translate_errors(cls: C) -> C:
    """Wrap a repository's public coroutine methods so callers see `StorageUnavailable`."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, translated(member))
    return cls


def dump(model: BaseModel) -> str:
    return model.model_dump_json()


def load(model: type[M], raw: str | None) -> M | None:
    return None if raw is None else model.model_validate_json(raw)


async def scan_keys(redis: Redis, pattern: str, *, skip: tuple[str, ...] = ()) -> list[str]:
    """All keys matching `pattern`, minus those starting with one of `skip`, sorted."""
    found: set[str] = set()
    async for key in redis.scan_iter(match=pattern, count=1000):
        if skip and key.startswith(skip):
            continue
        found.add(key)
    return sorted(found)


async def load_many(redis: Redis, model: type[M], keys: list[str]) -> list[M]:
    if not keys:
        return []
    values = await redis.mget(keys)
    return [model.model_validate_json(raw) for raw in values if raw is not None]


@translate_errors
class JsonRepository(Generic[M]):
    """Records of one model stored as JSON under `{prefix}{name}`.

    `skip` names the prefixes of index keys that share `prefix` but hold something else.
    """

    model: type[M]
    prefix: str
    skip: tuple[str, ...] = ()

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def get(self, name: str) -> M | None:
        return load(self.model, await self._redis.get(self.key(name)))

    async def all(self) -> list[M]:
        found = await scan_keys(self._redis, f"{self.prefix}*", skip=self.skip)
        return await load_many(self._redis, self.model, found)

    async def owned_by(self, owner_hash: str) -> list[M]:
        """The records whose `owner_token_hash` is `owner_hash`."""
        return [
            item
            for item in await self.all()
            if getattr(item, "owner_token_hash", None) == owner_hash
        ]


def json_fields(**fields: Any) -> dict[str, str]:
    """Stream entries hold strings; nested values are JSON."""
    return {
        key: value if isinstance(value, str) else json.dumps(value, default=str)
        for key, value in fields.items()
    }
