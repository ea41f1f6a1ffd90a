"""What one HTTP/2 connection may make the gateway do for nothing: pure counters, no I/O.

A client can cost work without asking for anything: streams it opens and resets at once (rapid
reset, CVE-2023-44487), SETTINGS and PING frames the gateway must acknowledge, empty DATA frames,
PRIORITY frames, WINDOW_UPDATEs. Each kind is counted per connection in fixed windows of
`WINDOW_SECONDS`; a connection over a budget is sent GOAWAY `ENHANCE_YOUR_CALM` and closed.
(CONTINUATION floods are bounded by the `h2` library, 64 frames per header block, and by
`encoding.BoundedFrameBuffer`: a block in progress holds at most `MAX_HEADER_LIST_SIZE` bytes.)
The budgets are far above what browsers, curl or h2load send, and far below what makes a flood pay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

WINDOW_SECONDS = 10.0


class Flood(Enum):
    RESETS = "streams reset by the client"
    SETTINGS = "SETTINGS frames"
    PINGS = "PING frames"
    EMPTY_DATA = "empty DATA frames"
    PRIORITY = "PRIORITY frames"
    WINDOW_UPDATES = "WINDOW_UPDATE frames"


BUDGETS = {
    Flood.RESETS: 200,
    Flood.SETTINGS: 100,
    Flood.PINGS: 100,
    Flood.EMPTY_DATA: 1000,
    Flood.PRIORITY: 1000,
    Flood.WINDOW_UPDATES: 10_000,
}
"""How many of each one connection may send per `WINDOW_SECONDS`."""


@dataclass(slots=True)
class _Window:
    start: float = 0.0
    count: int = 0


@dataclass
class FloodGuard:
    """One connection's counters."""

    budgets: dict[Flood, int] = field(default_factory=lambda: dict(BUDGETS))
    window: float = WINDOW_SECONDS
    _counts: dict[Flood, _Window] = field(default_factory=dict)

    def over(self, kind: Flood, now: float) -> bool:
        """Count one `kind` at `now`; True once the window's budget is exceeded."""
        counted = self._counts.get(kind)
        if counted is None:
            counted = self._counts[kind] = _Window(now)
        if now - counted.start >= self.window:
            counted.start, counted.count = now, 0
        counted.count += 1
        return counted.count > self.budgets[kind]

    def detail(self, kind: Flood) -> str:
        return f"more than {self.budgets[kind]} {kind.value} in {self.window:g}s"
