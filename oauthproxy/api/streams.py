"""Long-lived answers one token may hold open at once: bounded per token (on one gateway), so a
token cannot open them by the thousand. Each kind (`/api/v1/logs/follow`, a Docker service's
followed log) counts on its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from quart import current_app

Held = dict[str, int]
"""How many answers of one kind each token holds (by token hash)."""


def held(kind: str) -> Held:
    """The app's counts of `kind` (in a request: a streamed body runs after it, so it takes
    them from here)."""
    counts: Held = current_app.extensions.setdefault(f"oauthproxy.streams.{kind}", {})
    return counts


def is_full(held: Held, token_hash: str, limit: int) -> bool:
    """Whether the token holds `limit` answers already."""
    return held.get(token_hash, 0) >= limit


@contextmanager
def slot(held: Held, token_hash: str, limit: int) -> Iterator[bool]:
    """Hold one of the token's `limit` answers for the block when one is free; says whether it
    got one."""
    if is_full(held, token_hash, limit):
        yield False
        return
    held[token_hash] = held.get(token_hash, 0) + 1
    try:
        yield True
    finally:
        held[token_hash] -= 1
        if not held[token_hash]:
            del held[token_hash]
