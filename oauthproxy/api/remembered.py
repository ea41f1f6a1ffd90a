"""An answer that costs something to get, asked at most every few seconds for callers who need
no fresher one (an anonymous `GET /health`): they, and any caller while an ask runs, share it."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio


class Remembered:
    """The last answer of `ask`, asked again once it is `every` seconds old."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._lock = trio.Lock()
        self._answer: dict[str, Any] | None = None
        self._asked_at = -math.inf

    async def of(self, ask: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        async with self._lock:
            if self._answer is None or trio.current_time() - self._asked_at >= self.every:
                self._answer = await ask()
                self._asked_at = trio.current_time()
            return self._answer
