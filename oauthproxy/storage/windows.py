"""Fixed-window counters in Redis: how many times one client did something in the current window.

The rate limits of anonymous requests (registrations, login starts, client-document fetches) count
here, in Redis, so every replica counts in the same window.
"""

from __future__ import annotations

from pydantic import BaseModel

from oauthproxy.storage.base import Redis

# Count one more event in a fixed window: the first event starts the window (the key's lifetime,
# ARGV[1] ms; a counter without one gets it too). Answers {the count, the ms the window has left}.
COUNT_IN_WINDOW = """
local count = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
"""

# Count one more event in a fixed window only while fewer than ARGV[2] are counted in it: a
# refused event is not counted. Answers {the count (0: refused), the ms the window has left}.
COUNT_WITHIN_LIMIT = """
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  left = tonumber(ARGV[1])
end
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[2]) then
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
  return {0, left}
end
local count = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, left}
"""


class WindowCount(BaseModel):
    count: int
    """Events in the current window, this one included."""
    remaining_ms: int
    """Until the window ends."""


class WindowCounter:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(COUNT_IN_WINDOW)
        self._within = redis.register_script(COUNT_WITHIN_LIMIT)

    async def count(self, key: str, window_ms: int) -> WindowCount:
        """Count one event under `key` in its window of `window_ms` (one atomic step)."""
        reply: list[int] = await self._script(keys=[key], args=[window_ms])
        count, remaining_ms = reply
        return WindowCount(count=count, remaining_ms=remaining_ms)

    async def count_within(self, key: str, window_ms: int, limit: int) -> WindowCount:
        """Count one event under `key` in its window of `window_ms` while fewer than `limit`
        are counted there (one atomic step). When `limit` are, nothing is counted: the answer's
        `count` is 0, and `remaining_ms` says when the window ends."""
        reply: list[int] = await self._within(keys=[key], args=[window_ms, limit])
        count, remaining_ms = reply
        return WindowCount(count=count, remaining_ms=remaining_ms)
