"""Following a container's output (`logs?follow=true`) without a stream that could outlive its
reader: the engine is asked again every `POLL_SECONDS` for what came since the last line seen,
each ask a short `docker logs --since` call in a worker thread. A reader that goes away cancels
the generator between two asks, and nothing keeps running for it.

Lines are fetched with the engine's timestamps, which order them: a line at or before the last
one sent is a repeat of the overlap between two asks and is dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import trio

from oauthproxy.services.docker import DockerEngine

POLL_SECONDS = 0.5


async def _always() -> bool:
    return True


async def follow_logs(
    engine: DockerEngine,
    name: str,
    *,
    lines: int,
    timestamps: bool,
    still: Callable[[], Awaitable[bool]] = _always,
) -> AsyncIterator[str]:
    """The last `lines` lines, then every new line as it comes, until the caller stops or
    `still` (asked before each batch and each line) says the reader may read no more."""
    last: tuple[str, str] | None = None
    batch = await engine.logs(name, lines=lines, timestamps=True)
    while True:
        if not await still():
            return
        for line in batch:
            stamp, _, text = line.partition(" ")
            key = _order(stamp)
            if last is not None and key <= last:
                continue
            last = key
            if not await still():
                return
            yield line if timestamps else text
        await trio.sleep(POLL_SECONDS)
        since = _as_datetime(last) if last is not None else None
        batch = await engine.logs(name, lines=None, timestamps=True, since=since)


def _order(stamp: str) -> tuple[str, str]:
    """`2026-12-03T16:12:07.6859Z` as (seconds, nanoseconds padded): comparable as tuples."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return whole, fraction.ljust(9, "0")


def _as_datetime(key: tuple[str, str]) -> datetime:
    """The instant `key` names, to the microsecond (the repeat this allows is dropped)."""
    whole, fraction = key
    return datetime.fromisoformat(f"{whole}.{fraction[:6]}").replace(tzinfo=UTC)
