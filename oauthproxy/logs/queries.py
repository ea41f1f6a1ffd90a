"""Questions asked of the request log: which index to read, which entries match, and stats.

A query reads one time-ordered index (the most selective its filters allow: IP, OAuth client,
user, hostname, event, a status that is not 2xx, errors, slow, else every entry), at most
`SCAN_LIMIT` of its newest keys within the time window, and filters those entries here. An
owner's query reads only the indexes of the hostnames it owns, so other owners' traffic neither
shows nor crowds it out; of their keys together it reads the newest `SCAN_LIMIT` entries, as
the admin's query does (an owner with 50 hostnames read 50 times as many, per query).
`plan_indexes`, `matches`, `parse_query` and `percentiles` are pure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from oauthproxy.logs import schema
from oauthproxy.logs.records import FIELDS, REQUEST_KINDS, path_of
from oauthproxy.storage.request_logs import Entry, RequestLogRepository

SCAN_LIMIT = schema.INDEX_LIMIT
"""Index keys read per index and query: bounds the work one query can cause (and so what an
index need keep)."""

TEXT_FIELDS = ("request_path", "hostname", "user", "client_id", "client_ip", "gateway_reason")
"""What a bare word of a search query is looked for in."""


@dataclass(frozen=True)
class LogFilter:
    """One query's filters; None (or False) means "any"."""

    hours: float = 24
    ip: str | None = None
    hostname: str | None = None
    user: str | None = None
    client_id: str | None = None
    status: int | None = None
    method: str | None = None
    protocol: str | None = None
    """`HTTP/1.1`, `HTTP/1.0` or `HTTP/2` (see `protocol_named`)."""
    path: str | None = None
    """A path prefix (`/api` matches `/api/users`)."""
    errors: bool = False
    slow: bool = False
    event: str | None = None
    level: str | None = None
    words: tuple[str, ...] = ()
    """Bare words of a search query: each must appear in one of `TEXT_FIELDS`."""
    limit: int = 100
    hosts: Mapping[str, float] | None = None
    """The hostnames the caller may see (an owner's), each from a time on (seconds since the
    epoch: when the owner's proxy was made, `tenancy.logs.readable_hosts`); None: every entry."""


def level_of(status: int) -> str:
    """A request's level, as the specification's `level` filter sees it."""
    if status >= 500 or status == 0:
        return "ERROR"
    return "WARNING" if status >= 400 else "INFO"


def event_of(entry: Entry) -> str:
    """An entry's event name: `request`, `websocket` or `sse` for requests, else the event's
    own (`oauth.token_issued`, `proxy.served`, `admin.write`, ...)."""
    kind = entry.get("kind", "http")
    return "request" if kind == "http" else kind


PROTOCOLS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2", "2.0": "HTTP/2", "h2": "HTTP/2"}


def protocol_named(name: str) -> str | None:
    """The protocol an entry shows for a name a query may use (`HTTP/2`, `http/1.1`, `2`,
    `h2`); None for a name that is none."""
    name = name.lower()
    return PROTOCOLS.get(name.removeprefix("http/") if name.startswith("http/") else name)


def parse_query(query: str, base: LogFilter) -> LogFilter:
    """`base` narrowed by a search query: `status:500 host:api.example.com ip:... user:...
    client:... method:GET protocol:HTTP/2 path:/api level:ERROR event:websocket errors slow`
    and bare words."""
    found = base
    words: list[str] = list(base.words)
    for token in query.split():
        name, colon, value = token.partition(":")
        narrowed = _narrowed(found, name.lower(), value) if colon else None
        if narrowed is not None:
            found = narrowed
        elif token.lower() == "errors":
            found = replace(found, errors=True)
        elif token.lower() == "slow":
            found = replace(found, slow=True)
        else:
            words.append(token)
    return replace(found, words=tuple(words))


def _narrowed(found: LogFilter, name: str, value: str) -> LogFilter | None:
    """`found` with one `name:value` term applied; None when the name is not a filter."""
    if name == "status" and value.isdigit():
        return replace(found, status=int(value))
    if name in ("host", "hostname"):
        return replace(found, hostname=value.lower())
    if name in ("client", "client_id"):
        return replace(found, client_id=value)
    if name == "protocol":
        protocol = protocol_named(value)
        return replace(found, protocol=protocol) if protocol else None
    if name in ("method", "level"):
        value = value.upper()
    if name in ("ip", "user", "method", "path", "level", "event"):
        return replace(found, **{name: value})  # type: ignore[arg-type]
    return None


def plan_indexes(query: LogFilter) -> list[str]:
    """The indexes a query reads (their union, newest first, is then filtered by `matches`).
    An owner's query reads only its own hostnames' indexes (all of them, or the one it names):
    in a shared index (an IP's, a client's, a user's), other owners' newest entries would take
    the SCAN_LIMIT keys a query reads, and hide the owner's own."""
    if query.hosts is not None:
        hostnames = sorted(query.hosts) if query.hostname is None else [query.hostname]
        return [schema.host_index(host) for host in hostnames if host in query.hosts]
    if query.ip:
        return [schema.ip_index(query.ip)]
    if query.client_id:
        return [schema.client_index(query.client_id)]
    if query.user:
        return [schema.user_index(query.user)]
    if query.hostname:
        return [schema.host_index(query.hostname)]
    if query.event and query.event not in ("request", "websocket", "sse"):
        return [schema.event_index(query.event)]
    if query.status is not None and not 200 <= query.status < 300:
        return [schema.status_index(query.status)]
    if query.errors:
        return [schema.ERRORS]
    if query.slow:
        return [schema.SLOW]
    return [schema.ALL]


def matches(entry: Entry, query: LogFilter) -> bool:
    """Whether a stored entry passes every filter (the index read may be wider). Filters only
    requests have (status, path, method, slow) leave events out."""
    status = int(entry.get("status") or 0)
    host = entry.get("hostname", "")
    about_requests = (
        query.status is not None or query.path or query.method or query.slow or query.protocol
    )
    checks = (
        not about_requests or entry.get("kind", "http") in REQUEST_KINDS,
        query.hosts is None or _readable(entry, host, query.hosts),
        query.ip is None or entry.get("client_ip") == query.ip,
        query.hostname is None or host == query.hostname,
        query.user is None or entry.get("user") == query.user,
        query.client_id is None or entry.get("client_id") == query.client_id,
        query.status is None or status == query.status,
        query.method is None or entry.get("method") == query.method,
        query.protocol is None or entry.get("protocol") == query.protocol,
        query.path is None or path_of(entry.get("request_path", "")).startswith(query.path),
        not query.errors or status >= 400,
        query.level is None or level_of(status) == query.level,
        query.event is None or event_of(entry) == query.event,
        not query.words or _has_words(entry, query.words),
    )
    return all(checks)


def _has_words(entry: Entry, words: Sequence[str]) -> bool:
    """Every word in one of the entry's `TEXT_FIELDS` (joined by a space: a word has none, so
    it never spans two fields)."""
    text = " ".join([entry.get(name, "") for name in TEXT_FIELDS])
    return all(word in text for word in words)


def _readable(entry: Entry, host: str, hosts: Mapping[str, float]) -> bool:
    since = hosts.get(host)
    return since is not None and float(entry.get("timestamp") or 0) >= since


async def search(
    logs: RequestLogRepository, query: LogFilter, *, slow_seconds: float, now: float | None = None
) -> list[dict[str, object]]:
    """The newest entries matching `query`, at most `query.limit`."""
    since = (now if now is not None else time.time()) - query.hours * 3600
    found: set[str] = set()
    for index in plan_indexes(query):
        found.update(await logs.keys_in(index, since, limit=SCAN_LIMIT))
    newest = sorted(found, key=schema.time_of, reverse=True)[:SCAN_LIMIT]
    picked: list[dict[str, object]] = []
    for start in range(0, len(newest), 500):
        for entry in await logs.entries(newest[start : start + 500]):
            slow = float(entry.get("duration_ms") or 0) >= slow_seconds * 1000
            if matches(entry, query) and (slow or not query.slow):
                picked.append(decorated(entry))
                if len(picked) >= query.limit:
                    return picked
    return picked


NUMBERS = {"timestamp": float, "status": int, "bytes_in": int, "bytes_out": int,
           "duration_ms": float}  # fmt: skip
"""Stored fields shown as numbers (Redis keeps strings)."""


def decorated(entry: Entry) -> dict[str, object]:
    """A stored entry as the API shows it: every field (empty ones are not stored), numbers as
    numbers, with its `event` and `level`."""
    shown: dict[str, object] = {name: entry.get(name, "") for name in FIELDS}
    for name, kind in NUMBERS.items():
        try:
            shown[name] = kind(entry[name])
        except (KeyError, ValueError):
            continue
    shown["event"] = event_of(entry)
    shown["level"] = level_of(int(entry.get("status") or 0))
    return shown


def percentiles(values: Sequence[float], points: Iterable[int] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles (`p50`, ...) of `values`; empty when there are none."""
    if not values:
        return {}
    ordered = sorted(values)
    return {
        f"p{point}": ordered[max(0, math.ceil(point / 100 * len(ordered)) - 1)] for point in points
    }
