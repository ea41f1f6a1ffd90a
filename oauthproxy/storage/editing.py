"""Change or delete one JSON record atomically: read it, decide, write, and start again if it
changed meanwhile.

The write is a MULTI/EXEC under WATCH of the record's key (and of any companion keys the decision
reads). When anyone changes a watched key between the read and EXEC, Redis refuses the whole
transaction and the edit starts over from a fresh read (`base.retrying_conflicts`, the one retry
every multi-key write shares). So a record deleted meanwhile is never written back, and a decision
(an ownership check, a merge) is always made on what gets replaced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from coredis.exceptions import WatchError

from oauthproxy.errors import NotFound
from oauthproxy.storage.base import (
    JsonRepository,
    M,
    Pipeline,
    load,
    retrying_conflicts,
    translate_errors,
)

T = TypeVar("T")

Edit = Callable[[Pipeline, M], Awaitable[T]]
"""Queues the writes for the current record on the transaction; may raise to write nothing."""


def anyone(record: object) -> None:
    """The check that allows every caller."""


def no_companions(record: object) -> list[str]:
    return []


@translate_errors
class EditableRepository(JsonRepository[M]):
    kind: str
    """What the record is called in `NotFound` ("proxy", "service")."""

    async def _edit(
        self,
        name: str,
        edit: Edit[M, T],
        companions: Callable[[M], list[str]] = no_companions,
    ) -> T:
        """Run `edit` on the current record in a transaction, retried until nothing interferes."""
        return await retrying_conflicts(lambda: self._edit_once(name, edit, companions))

    async def _edit_once(
        self, name: str, edit: Edit[M, T], companions: Callable[[M], list[str]]
    ) -> T:
        key = self.key(name)
        seen = await self._redis.get(key)
        current = load(self.model, seen)
        if current is None:
            raise NotFound(self.kind, name)
        async with (
            self._redis.pipeline(transaction=True) as pipe,
            pipe.watch(key, *companions(current)),
        ):
            if await self._redis.get(key) != seen:
                raise WatchError(f"{key} changed before it was watched")
            return await edit(pipe, current)
