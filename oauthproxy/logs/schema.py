"""The request log's Redis keys, and the writes one batch of entries becomes.

Keys (the specification's, plus `idx:req:all` and `idx:req:client:{id}` for the unfiltered and
the per-OAuth-client queries, and `stats:durations:{hostname}` for the percentiles):

    req:{timestamp}-{n}:{ip}          hash: the entry's fields (`n` tells apart entries of one
                                      client in the same microsecond)
    idx:req:{all|errors|slow}         sorted sets: entry key → timestamp
    idx:req:ip:{ip} / host:{hostname} / user:{user} / client:{client_id} / status:{code}
    idx:req:path:{method}:{path}      the same, per value
    idx:req:event:{name}              events (OAuth steps, proxies served and stopped, admin
                                      writes): entries whose `kind` is not a request's
    stream:requests                   the live stream of entry keys (MAXLEN ~ LOG_STREAM_MAXLEN)
    stats:requests:{YYYYMMDD:HH}      hourly counts (and stats:errors:... for 4xx/5xx)
    stats:unique_ips:{hostname}:{YYYYMMDD:HH}   HyperLogLog of client IPs
    stats:durations:{hostname}        list: the last DURATION_WINDOW durations (ms), newest first

Indexes are sorted sets scored by time, so a query over the last N hours is one ZREVRANGEBYSCORE
and trimming is one ZREMRANGEBYSCORE. Every key gets the retention as its TTL on each write, and
every index is trimmed to the retention window on each write, so nothing outlives the retention.
Pure: `plan(...)` returns the writes, `oauthproxy.storage.request_logs` sends them (one script
call per batch).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from oauthproxy.logs.records import REQUEST_KINDS, RequestEntry, path_of, values_of

PREFIXES = ("req:", "idx:req:", "stream:requests", "stats:requests:", "stats:errors:",
            "stats:unique_ips:", "stats:durations:")  # fmt: skip
"""Every key of the request log starts with one of these (`logs-clear` deletes exactly them)."""

STREAM = "stream:requests"
ALL = "idx:req:all"
ERRORS = "idx:req:errors"
SLOW = "idx:req:slow"
DURATION_WINDOW = 1000
"""Durations kept per hostname for the percentiles: a sliding window of the latest requests."""


def entry_key(timestamp: str, sequence: int, ip: str) -> str:
    return f"req:{timestamp}-{sequence}:{ip}"


def ip_index(ip: str) -> str:
    return f"idx:req:ip:{ip}"


def host_index(hostname: str) -> str:
    return f"idx:req:host:{hostname}"


def user_index(user: str) -> str:
    return f"idx:req:user:{user}"


def event_index(name: str) -> str:
    return f"idx:req:event:{name}"


def client_index(client_id: str) -> str:
    return f"idx:req:client:{client_id}"


def status_index(status: int | str) -> str:
    return f"idx:req:status:{status}"


def path_index(method: str, path: str) -> str:
    return f"idx:req:path:{method}:{path}"


def hour_of(timestamp: float) -> str:
    """`YYYYMMDD:HH` in UTC, as the hourly keys name it."""
    return time.strftime("%Y%m%d:%H", time.gmtime(timestamp))


def requests_count(hour: str) -> str:
    return f"stats:requests:{hour}"


def errors_count(hour: str) -> str:
    return f"stats:errors:{hour}"


def unique_ips(hostname: str, hour: str) -> str:
    return f"stats:unique_ips:{hostname}:{hour}"


def durations(hostname: str) -> str:
    return f"stats:durations:{hostname}"


@dataclass
class WritePlan:
    """What one batch writes; built without I/O, sent as one script call (see
    `oauthproxy.storage.request_logs`)."""

    entries: list[tuple[str, list[str]]] = field(default_factory=list)
    """(entry key, its values in `FIELDS` order): each a hash and a stream entry."""
    indexed: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    """Index key → the positions (from 1) in `entries` of the entries it lists. Positions, not
    keys and times: the batch is JSON, and small integers are what JSON encodes fastest."""
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    visitors: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    """HyperLogLog key → positions of the entries whose client IP it counts."""
    durations: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    """Durations list key → positions of the entries whose duration it keeps."""
    oldest: float = 0.0
    """Index members scored before this are trimmed."""


def index_keys(values: list[str], *, slow: bool) -> list[str]:
    """The indexes an entry (as `values_of`) is listed in."""
    ip, host, method, target = values[1], values[3], values[4], values[5]
    status = int(values[6] or 0)
    user, client_id, kind = values[12], values[13], values[16]
    if kind not in REQUEST_KINDS:
        return _event_index_keys(kind, ip, host, user, client_id, status)
    found = [ALL, ip_index(ip), host_index(host), status_index(status),
             path_index(method, path_of(target))]  # fmt: skip
    if user:
        found.append(user_index(user))
    if client_id:
        found.append(client_index(client_id))
    if status >= 400:
        found.append(ERRORS)
    if slow:
        found.append(SLOW)
    return found


def _event_index_keys(
    name: str, ip: str, host: str, user: str, client_id: str, status: int
) -> list[str]:
    found = [ALL, event_index(name)]
    found += [key(value) for key, value in ((ip_index, ip), (host_index, host),
              (user_index, user), (client_index, client_id)) if value]  # fmt: skip
    if status >= 400:
        found.append(ERRORS)
    return found


def plan(
    entries: Iterable[RequestEntry],
    *,
    first_sequence: int,
    slow_seconds: float,
    retention_seconds: int,
    now: float,
) -> WritePlan:
    """The writes for `entries`; sequence numbers count up from `first_sequence`."""
    writes = WritePlan(oldest=now - retention_seconds)
    hours: dict[int, str] = {}
    for position, entry in enumerate(entries, 1):
        values = values_of(entry)
        key = entry_key(values[0], first_sequence + position - 1, entry.client_ip)
        writes.entries.append((key, values))
        for index in index_keys(values, slow=entry.duration >= slow_seconds):
            writes.indexed[index].append(position)
        if entry.kind not in REQUEST_KINDS:
            continue  # events are not requests: no request statistics
        slot = int(entry.started // 3600)
        hour = hours.get(slot) or hours.setdefault(slot, hour_of(entry.started))
        writes.counters[requests_count(hour)] += 1
        if entry.status >= 400:
            writes.counters[errors_count(hour)] += 1
        writes.visitors[unique_ips(entry.host, hour)].append(position)
        writes.durations[durations(entry.host)].append(position)
    return writes
