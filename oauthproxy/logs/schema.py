"""The request log's Redis keys, and the writes one batch of entries becomes.

Keys (the specification's, plus `idx:req:all` and `idx:req:client:{id}` for the unfiltered and
the per-OAuth-client queries, and `stats:durations:{hostname}` for the percentiles):

    req:{timestamp}-{n}:{ip}          hash: the entry's fields (`n` tells apart entries of one
                                      client in the same microsecond)
    idx:req:{all|errors|slow}         sorted sets: entry key → timestamp
    idx:req:ip:{ip} / host:{hostname} / user:{user} / client:{client_id} / status:{code}
    idx:req:path:{method}:{path}      the same, per value
    stream:requests                   the live stream (XADD MAXLEN ~ LOG_STREAM_MAXLEN)
    stats:requests:{YYYYMMDD:HH}      hourly counts (and stats:errors:... for 4xx/5xx)
    stats:unique_ips:{hostname}:{YYYYMMDD:HH}   HyperLogLog of client IPs
    stats:durations:{hostname}        list: the last DURATION_WINDOW durations (ms), newest first

Indexes are sorted sets scored by time, so a query over the last N hours is one ZREVRANGEBYSCORE
and trimming is one ZREMRANGEBYSCORE. Every key gets the retention as its TTL on each write, and
every index is trimmed to the retention window on each write, so nothing outlives the retention.
Pure: `plan(...)` returns the writes, `oauthproxy.storage.request_logs` sends them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from oauthproxy.logs.records import RequestEntry, path_of

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
    """What one batch writes; built without I/O, sent in one pipeline."""

    hashes: dict[str, dict[str, str]] = field(default_factory=dict)
    indexed: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    """Index key → {entry key: timestamp}."""
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    visitors: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    durations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    stream: list[dict[str, str]] = field(default_factory=list)
    oldest: float = 0.0
    """Index members scored before this are trimmed."""


def index_keys(fields: dict[str, str], *, slow: bool) -> list[str]:
    """The indexes an entry (as fields) is listed in."""
    status = int(fields["status"] or 0)
    found = [
        ALL,
        ip_index(fields["client_ip"]),
        host_index(fields["hostname"]),
        status_index(status),
        path_index(fields["method"], path_of(fields["request_path"])),
    ]
    if fields["user"]:
        found.append(user_index(fields["user"]))
    if fields["client_id"]:
        found.append(client_index(fields["client_id"]))
    if status >= 400:
        found.append(ERRORS)
    if slow:
        found.append(SLOW)
    return found


def plan(
    entries: Iterable[tuple[RequestEntry, dict[str, str]]],
    *,
    first_sequence: int,
    slow_seconds: float,
    retention_seconds: int,
    now: float,
) -> WritePlan:
    """The writes for `entries` (each with its `fields_of`); sequence numbers count up from
    `first_sequence`."""
    writes = WritePlan(oldest=now - retention_seconds)
    for sequence, (entry, fields) in enumerate(entries, first_sequence):
        key = entry_key(fields["timestamp"], sequence, entry.client_ip)
        writes.hashes[key] = fields
        for index in index_keys(fields, slow=entry.duration >= slow_seconds):
            writes.indexed[index][key] = entry.started
        hour = hour_of(entry.started)
        writes.counters[requests_count(hour)] += 1
        if entry.status >= 400:
            writes.counters[errors_count(hour)] += 1
        writes.visitors[unique_ips(entry.host, hour)].add(entry.client_ip)
        writes.durations[durations(entry.host)].append(fields["duration_ms"])
        writes.stream.append({"key": key, **fields})
    return writes
