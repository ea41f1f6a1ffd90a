"""Per-client limits on anonymous requests that make the gateway store something. Pure decision;
the counting is Redis's (`storage/windows.py`), so it holds across replicas.

Open endpoints that write to Redis are a way to fill it: every login start stores a pending login,
every registration a client, every fetched Client ID Metadata Document a cache entry. Two limits,
each a count per client IP in a fixed window:

- OAUTH_REGISTER_RATE_LIMIT / _WINDOW: `POST /register`;
- OAUTH_ANONYMOUS_RATE_LIMIT / _WINDOW: login starts (`GET /authorize`, a `redirect`-mode proxy's
  browser login) and requests naming a metadata-document client the gateway has not cached
  (`/token`, `/revoke`, `/introspect`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from oauthproxy.storage.windows import WindowCount


@dataclass(frozen=True)
class Limited:
    retry_after: int
    """Seconds until the window ends (at least 1): the Retry-After header."""
    description: str


def over_limit(counted: WindowCount, limit: int, window: int, what: str) -> Limited | None:
    """Limited when `counted` is over `limit` events of `what` per `window` seconds (a limit of
    0 is no limit), else None."""
    if not limit or counted.count <= limit:
        return None
    retry_after = max(1, math.ceil(counted.remaining_ms / 1000))
    return Limited(
        retry_after,
        f"at most {limit} {what} per {window} s from one address; try again in {retry_after} s",
    )
