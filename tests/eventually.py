"""One way for a test to wait on something it cannot be told about.

The gateway follows Redis, other processes start and die, and a proxy serves "a few moments"
after it is created: a test that must observe such a change from outside has nothing to wait on
but polling. Every such wait goes through `eventually`, so each has a deadline, a short backoff
and, when it fails, a message that says what was awaited and what was last seen instead of a
bare `TooSlowError`. Where the test owns the thing it waits for, it uses a `trio.Event` instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import trio

T = TypeVar("T")

FIRST_PAUSE = 0.005
LONGEST_PAUSE = 0.05
"""The pause between checks doubles from FIRST_PAUSE up to LONGEST_PAUSE: quick when the change
takes milliseconds, without spinning when it takes seconds."""

_NOTHING_YET = "no check finished"


async def eventually(
    check: Callable[[], Awaitable[T | Literal[False] | None]],
    *,
    what: str,
    within: float = 10,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """`check()`'s first result that is neither None nor False.

    A check that raises one of `ignoring` (e.g. OSError while a port is not yet open) has not
    come true yet either. Any other error, an AssertionError too, ends the wait at once: an
    assertion inside a check still fails the test where it fails. A check still running at the
    deadline is cancelled. After `within` seconds: an AssertionError naming `what` and the last
    result or error seen.
    """
    last: object = _NOTHING_YET
    pause = FIRST_PAUSE
    with trio.move_on_after(within):
        while True:
            try:
                result = await check()
            except ignoring as error:
                last = error
            else:
                if result is not None and result is not False:
                    return result
                last = result
            await trio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)
    cause = last if isinstance(last, BaseException) else None
    raise AssertionError(f"{what}: not within {within} s; last seen: {last!r}") from cause
