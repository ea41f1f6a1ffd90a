"""The shared backoff, in exact virtual seconds on trio's autojump clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from oauthproxy.retrying import Backoff, retrying


class Flaky(Exception):
    pass


async def test_backoff_doubles_up_to_its_limit(autojump_clock: trio.testing.MockClock) -> None:
    backoff = Backoff(first=0.1, limit=1.0)
    started = trio.current_time()
    waited = []
    for _ in range(6):
        before = trio.current_time()
        await backoff.wait()
        waited.append(round(trio.current_time() - before, 6))
    assert waited == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert round(trio.current_time() - started, 6) == 3.5
    backoff.reset()
    assert backoff.next_delay == 0.1


async def test_retrying_waits_between_failures_and_resets_after_success(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = Backoff(first=0.5, limit=2.0)
    calls: list[float] = []
    started = trio.current_time()

    async def attempt() -> str:
        calls.append(round(trio.current_time() - started, 6))
        if len(calls) < 4:
            raise Flaky("not yet")
        return "done"

    assert await retrying(attempt, Flaky, backoff, what="the test") == "done"
    assert calls == [0.0, 0.5, 1.5, 3.5]
    assert backoff.next_delay == 0.5


async def test_retrying_lets_other_errors_through(autojump_clock: trio.testing.MockClock) -> None:
    async def attempt() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        await retrying(attempt, Flaky, Backoff(), what="the test")


async def test_retrying_is_cancelled_while_it_waits(autojump_clock: trio.testing.MockClock) -> None:
    async def attempt() -> None:
        raise Flaky("down")

    started = trio.current_time()
    with trio.move_on_after(10) as scope:
        await retrying(attempt, Flaky, Backoff(first=1.0, limit=1.0), what="the test")
    assert scope.cancelled_caught
    assert trio.current_time() - started == 10.0
