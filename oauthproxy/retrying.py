"""One way to wait between attempts: exponential backoff with a ceiling, and `retrying()`.

Every loop that rides out a failure (Redis away, the embedded Redis restarting) waits the same
way, so how long the gateway waits after the n-th failure is written once and tested once (on
trio's `autojump_clock`, in exact virtual seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

T = TypeVar("T")

log = logging.getLogger(__name__)


class Backoff:
    """Delays of `first`, doubling up to `limit`; `reset()` after a success starts over."""

    def __init__(self, first: float = 0.1, limit: float = 5.0) -> None:
        self.first = first
        self.limit = limit
        self.next_delay = first

    async def wait(self) -> None:
        """Sleep the current delay, and make the next one longer."""
        delay = self.next_delay
        self.next_delay = min(delay * 2, self.limit)
        await trio.sleep(delay)

    def reset(self) -> None:
        self.next_delay = self.first


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    retry_on: type[Exception] | tuple[type[Exception], ...],
    backoff: Backoff,
    *,
    what: str,
) -> T:
    """`await attempt()` until it returns; each `retry_on` failure is followed by `backoff.wait()`
    (and a debug line: the caller says what an outage means, once). Other errors, and
    cancellation, pass through."""
    while True:
        try:
            result = await attempt()
        except retry_on as error:
            log.debug("%s failed (%s); retrying in %.1f s", what, error, backoff.next_delay)
            await backoff.wait()
            continue
        backoff.reset()
        return result
