"""The tests' one polling helper, in exact virtual seconds on trio's autojump clock: when each
check runs, what counts as "not yet", and what a wait that never comes true reports."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from tests.eventually import eventually

CHECKS_AT = [0.0, 0.005, 0.015, 0.035, 0.075, 0.125, 0.175]
"""When the checks run: the pause doubles from 5 ms and stays at 50 ms."""


class Checks:
    """A check that is not yet true `misses` times (each miss made by `miss`), then `result`."""

    def __init__(self, misses: int, miss: Callable[[], object], result: object = "done") -> None:
        self.misses, self.miss, self.result = misses, miss, result
        self.start = trio.current_time()
        self.times: list[float] = []
        """When each check ran, in seconds after the first."""

    async def __call__(self) -> object:
        self.times.append(round(trio.current_time() - self.start, 6))
        if len(self.times) <= self.misses:
            return self.miss()
        return self.result


def not_yet_error(error: Exception) -> Callable[[], object]:
    def miss() -> object:
        raise error

    return miss


@pytest.mark.parametrize(
    ("misses", "miss"),
    [
        (0, lambda: None),
        (1, lambda: None),
        (3, lambda: False),
        (6, not_yet_error(ConnectionRefusedError())),
        (2, not_yet_error(TimeoutError())),
    ],
)
async def test_polls_with_a_doubling_pause_until_the_check_comes_true(
    autojump_clock: trio.testing.MockClock, misses: int, miss: Callable[[], object]
) -> None:
    check = Checks(misses, miss)
    assert await eventually(check, what="done", ignoring=(OSError,)) == "done"
    assert check.times == CHECKS_AT[: misses + 1]


@pytest.mark.parametrize("falsy", [0, "", [], {}])
async def test_only_none_and_false_mean_not_yet(
    autojump_clock: trio.testing.MockClock, falsy: object
) -> None:
    assert await eventually(Checks(0, lambda: None, falsy), what="falsy") == falsy


@pytest.mark.parametrize("error", [ConnectionRefusedError(), AssertionError("a broken promise")])
async def test_errors_not_ignored_end_the_wait_at_once(
    autojump_clock: trio.testing.MockClock, error: Exception
) -> None:
    start = trio.current_time()
    with pytest.raises(type(error)) as raised:
        await eventually(Checks(1, not_yet_error(error)), what="refused", ignoring=(KeyError,))
    assert raised.value is error
    assert trio.current_time() == start


@pytest.mark.parametrize(
    ("miss", "reported"),
    [
        (lambda: None, "None"),
        (lambda: False, "False"),
        (not_yet_error(ConnectionResetError("by peer")), "ConnectionResetError('by peer')"),
    ],
)
async def test_at_the_deadline_it_says_what_was_awaited_and_last_seen(
    autojump_clock: trio.testing.MockClock, miss: Callable[[], object], reported: str
) -> None:
    start = trio.current_time()
    with pytest.raises(AssertionError) as failed:
        await eventually(Checks(10**6, miss), what="proxy served", within=3, ignoring=(OSError,))
    assert trio.current_time() == start + 3
    assert str(failed.value) == f"proxy served: not within 3 s; last seen: {reported}"
    assert repr(failed.value.__cause__) == (reported if "Error" in reported else "None")


async def test_a_check_that_hangs_is_cancelled_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hangs() -> bool:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    start = trio.current_time()
    with pytest.raises(AssertionError, match=r"^handshake: not within 5 s; last seen: 'no check"):
        await eventually(hangs, what="handshake", within=5)
    assert trio.current_time() == start + 5
