"""The request log's Redis keys, and the writes one batch of entries becomes.

Keys (the specification's, plus `idx:req:all`, `idx:req:client:{id}` and `idx:req:event:{name}`
for the unfiltered, per-OAuth-client and per-event queries, and `stats:durations:{hostname}` for
the percentiles; the specification's `idx:req:path:{method}:{path}` is not kept: see `index_keys`;
entries are fields of a hash per 10 seconds, not a hash each: see `bucket`):

    req:{start}                       hash, one per BUCKET_SECONDS of entries' times: entry key
                                      (`req:{timestamp}-{n}:{ip}`, `n` tells apart entries of
                                      one client in the same microsecond) → the entry's other
                                      fields packed (`pack`); it expires the retention after
                                      its first second
    idx:req:{all|errors|slow}         sorted sets: the keys of up to INDEX_CHUNK entries →
                                      the newest one's timestamp (and COUNT → entries listed)
    idx:req:ip:{ip} / host:{hostname} / user:{user} / client:{client_id} / status:{code}
    idx:req:event:{name}              events (OAuth steps, proxies served and stopped, admin
                                      writes, certificates): entries whose `kind` is not a
                                      request's
    stream:requests                   the live stream of entry keys, one item per batch
                                      (MAXLEN ~ about LOG_STREAM_MAXLEN entries)
    stats:requests:{YYYYMMDD:HH}      hourly counts (and stats:errors:... for 4xx/5xx)
    stats:unique_ips:{hostname}:{YYYYMMDD:HH}   HyperLogLog of client IPs
    stats:durations:{hostname}        list: the last DURATION_WINDOW durations (ms), newest first

Indexes are sorted sets scored by time, so a query over the last N hours is one
ZREVRANGEBYSCORE. A query reads at most INDEX_LIMIT of an index's newest entries, so an index
keeps little more. Every key but the buckets gets the retention as its TTL on each write, and the
stream is capped. Pure: `plan(...)` returns the writes and `encoded(...)` the script's
arguments; `oauthproxy.storage.request_logs` sends them (one script call per batch).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from oauthproxy.logs.records import (
    FIELDS,
    REQUEST_KINDS,
    STORED_TARGET_LENGTH,
    RequestEntry,
    protocol_of,
    redact_target,
    values_of,
)

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


DEFAULTS = {"scheme": "http", "method": "GET", "kind": "http"}
"""Values an entry read back has when its stored form leaves the field out (an empty value, or
one written before entries were packed, which left these out)."""
BUCKET_SECONDS = 10
"""Entries whose times fall in the same this many seconds are fields of one hash (`bucket`)."""
DURATION = FIELDS.index("duration_ms")
PACKED_FIELDS = FIELDS[2:]
"""What a bucket's field value holds: every field but the timestamp and the client IP (the
entry's key holds them); the protocol as its HTTP version (`1.1`, `2`)."""
EARLIER_PACKINGS = {"1": PACKED_FIELDS[:-1]}
"""The fields of packed forms of earlier versions (before the protocol), still read."""
SEPARATOR = "\x1f"
ENTRIES = "\x1e"
"""Between the keys and packed values of a batch's entries, in the one argument they go in."""
PACKING = "2"
"""The packed form's version: the first of its parts."""
STREAM_CHUNK = 100
"""Entry keys per item of the live stream (one item per batch, or per this many entries)."""
INDEX_LIMIT = 5000
"""Entries an index keeps (its newest): a query reads at most this many of an index's newest
keys (`oauthproxy.logs.queries`), so older ones would never be read. Trimmed when an index
holds `INDEX_SLACK` more, to at least this many (whole members go: up to `INDEX_CHUNK` more
stay)."""
INDEX_SLACK = 500
INDEX_CHUNK = 100
"""Entry keys per index member: a member of an index is how many entries it lists and their
keys, space-separated, up to this many entries of one group of a batch, scored by the newest
one's time (a member per entry, with its trimming, was half of Redis's CPU per logged request);
the member `COUNT` holds, as its score, how many entries the index lists (the trimming reads a
member's count, not its keys). Members written before chunks hold one key each."""
COUNT = "#count"


def time_of(key: str) -> float:
    """An entry key's time (`req:{timestamp}-{n}:{ip}`); 0 for a key that is not one."""
    try:
        return float(key.removeprefix("req:").partition("-")[0])
    except ValueError:
        return 0.0


def bucket(timestamp: float) -> str:
    """The hash that holds the entries of this time: entries are fields of one hash per
    `BUCKET_SECONDS`, not a hash (and a key with its own expiry) each; Redis spent half of its
    time per entry on those. The bucket expires `LOG_RETENTION_HOURS` after its first second,
    so no entry outlives the retention."""
    second = int(timestamp)
    return f"req:{second - second % BUCKET_SECONDS}"


def bucket_of(key: str) -> str:
    """The bucket an entry key's entry is in."""
    return bucket(time_of(key))


def pack(entry: RequestEntry, duration: str) -> str:
    """An entry as a bucket's field value: `PACKING` and the values of `PACKED_FIELDS`
    (`duration` is its `duration_ms`), joined by `SEPARATOR`. A value holding `SEPARATOR` or
    `ENTRIES` (the batch's separator of entries) has it replaced."""
    # One f-string straight from the entry: a third of the time of %-formatting or joining
    # `values_of(entry)` (this runs once per logged request). `records.stored_path`, inlined:
    target = entry.target.decode("latin-1")
    if "?" in target or ";" in target:  # (`records.needs_redaction`, inlined: once a request)
        target = redact_target(target)
    if len(target) > STORED_TARGET_LENGTH:
        target = target[:STORED_TARGET_LENGTH] + "…"
    packed = (
        f"{PACKING}\x1f{entry.scheme.decode('latin-1')}\x1f{entry.host}"
        f"\x1f{entry.method.decode('latin-1')}\x1f{target}\x1f{entry.status}"
        f"\x1f{entry.bytes_in}\x1f{entry.bytes_out}\x1f{duration}\x1f{entry.upstream}"
        f"\x1f{entry.route_id}\x1f{entry.user}\x1f{entry.client_id}\x1f{entry.tls_version}"
        f"\x1f{entry.reason}\x1f{entry.kind}\x1f{entry.version.decode('latin-1')}"
    )
    if packed.count(SEPARATOR) == len(PACKED_FIELDS) and ENTRIES not in packed:
        return packed
    cleaned = (
        str(value).replace(SEPARATOR, "\ufffd").replace(ENTRIES, "\ufffd")
        for value in (*values_of(entry)[2:-1], entry.version.decode("latin-1"))
    )
    return SEPARATOR.join([PACKING, *cleaned])


def unpacked(packed: str) -> dict[str, str]:
    """A bucket's field value as the entry's non-empty fields (but the key's); empty when it
    is not one this version reads."""
    version, *values = packed.split(SEPARATOR)
    names = PACKED_FIELDS if version == PACKING else EARLIER_PACKINGS.get(version, ())
    if len(values) != len(names) or not names:
        return {}
    found = {name: value for name, value in zip(names, values, strict=True) if value}
    if "protocol" in found:
        found["protocol"] = protocol_of(found["protocol"])
    return found


@dataclass
class WritePlan:
    """What one batch writes; built without I/O, sent as one script call (see
    `oauthproxy.storage.request_logs`). Entries that share what their indexes and statistics
    depend on (client IP, hostname, user, OAuth client, kind, status, slowness, hour) form one
    group: the indexes are named once per group, not once per entry."""

    first_sequence: int
    scores: list[str] = field(default_factory=list)
    """Each entry's timestamp (`records.stamp`): its score in the indexes (positions count
    from 1)."""
    durations_ms: list[str] = field(default_factory=list)
    """Each entry's `duration_ms`."""
    keys: list[str] = field(default_factory=list)
    """Each entry's key: `entry_key(timestamp, first_sequence + position - 1, client IP)`."""
    packed: list[str] = field(default_factory=list)
    """Each entry's bucket field value (`pack`)."""
    runs: list[tuple[str, int, int]] = field(default_factory=list)
    """(bucket, first position, last position) of each run of entries in one bucket (entries
    come nearly in time order: most batches are one run, or two)."""
    groups: list[tuple[list[str], list[int]]] = field(default_factory=list)
    """(index keys, positions of the entries listed in each of them)."""
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    visitors: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    """HyperLogLog key → positions of entries whose client IP it counts (one per group: the
    entries of a group share their IP)."""
    durations: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    """Durations list key → positions of the entries whose duration it keeps."""

    def key(self, position: int) -> str:
        return self.keys[position - 1]

    @property
    def indexed(self) -> dict[str, list[int]]:
        """Index key → positions (the groups, per index)."""
        found: dict[str, list[int]] = defaultdict(list)
        for indexes, positions in self.groups:
            for index in indexes:
                found[index] += positions
        return {index: sorted(positions) for index, positions in found.items()}

    @property
    def buckets(self) -> dict[str, int]:
        """Bucket → its first second (what its expiry counts from)."""
        return {name: int(name.removeprefix("req:")) for name, _first, _last in self.runs}


SEQUENCES = 1_000_000
"""Entry sequence numbers wrap here (they only tell apart entries of one microsecond)."""


def index_keys(
    *, ip: str, host: str, user: str, client_id: str, kind: str, status: int, slow: bool
) -> list[str]:
    """The indexes an entry is listed in. Every entry is in `ALL` and in its client IP's and
    hostname's (owner-scoped queries read hostname indexes); the others only when they apply:
    a user, an OAuth client, an event's name, an answer that is not 2xx (its status's index),
    4xx/5xx (errors), slow requests. A 2xx status or a path is found by filtering a wider index
    (the status of most requests, and a path prefix, which no index of exact values answers)."""
    found = [ALL]
    if kind not in REQUEST_KINDS:
        found.append(event_index(kind))
        found += [key(value) for key, value in ((ip_index, ip), (host_index, host)) if value]
    else:
        found += [ip_index(ip), host_index(host)]
        if not 200 <= status < 300:
            found.append(status_index(status))
        if slow:
            found.append(SLOW)
    if user:
        found.append(user_index(user))
    if client_id:
        found.append(client_index(client_id))
    if status >= 400:
        found.append(ERRORS)
    return found


def plan(entries: Iterable[RequestEntry], *, first_sequence: int, slow_seconds: float) -> WritePlan:
    """The writes for `entries`; sequence numbers count up from `first_sequence`."""
    writes = WritePlan(first_sequence=first_sequence)
    # The lists' `append`s, looked up once (this loop runs once per logged request).
    score, duration_of, key, packing = (
        writes.scores.append,
        writes.durations_ms.append,
        writes.keys.append,
        writes.packed.append,
    )
    runs = writes.runs
    grouped: dict[tuple[str, str, str, str, str, int, bool, int], list[int]] = {}
    sequence, span = first_sequence % SEQUENCES, -1
    position = first = 0
    last: tuple[object, ...] = ()
    group: list[int] = []
    for position, entry in enumerate(entries, 1):
        timestamp = f"{entry.started:.6f}"  # `records.stamp`, inlined
        duration = f"{entry.duration * 1000:.3f}"
        score(timestamp)
        duration_of(duration)
        key(f"req:{timestamp}-{sequence}:{entry.client_ip}")  # `entry_key`, inlined
        packing(pack(entry, duration))
        sequence = sequence + 1 if sequence + 1 < SEQUENCES else 0
        second = int(timestamp[:-7])  # as readers see it (`bucket_of`): rounded to the µs
        if second // BUCKET_SECONDS != span:
            if first:
                runs.append((bucket(span * BUCKET_SECONDS), first, position - 1))
            span, first = second // BUCKET_SECONDS, position
        shared = (entry.client_ip, entry.host, entry.user, entry.client_id, entry.kind,
                  entry.status, entry.duration >= slow_seconds, second // 3600)  # fmt: skip
        if shared != last:  # most often the entry is in the group of the one before
            group, last = grouped.setdefault(shared, []), shared
        group.append(position)
    if first:
        runs.append((bucket(span * BUCKET_SECONDS), first, position))
    for (ip, host, user, client_id, kind, status, slow, slot), positions in grouped.items():
        indexes = index_keys(
            ip=ip, host=host, user=user, client_id=client_id, kind=kind, status=status, slow=slow
        )
        writes.groups.append((indexes, positions))
        if kind not in REQUEST_KINDS:
            continue  # events are not requests: no request statistics
        hour = hour_of(slot * 3600)
        writes.counters[requests_count(hour)] += len(positions)
        if status >= 400:
            writes.counters[errors_count(hour)] += len(positions)
        writes.visitors[unique_ips(host, hour)].append(positions[0])  # one IP per group
        writes.durations[durations(host)] += positions
    return writes


def _ip_of(key: str) -> str:
    """The client IP an entry key names (`req:{timestamp}-{n}:{ip}`; an IPv6 one holds ':')."""
    return key[4:].partition(":")[2]


def chunks(positions: list[int], scores: list[str]) -> list[tuple[str, list[int]]]:
    """A group's entries as index members: (the newest entry's score, the positions of up to
    `INDEX_CHUNK` entries) each (one member's key list: see `INDEX_CHUNK`)."""
    found = []
    for start in range(0, len(positions), INDEX_CHUNK):
        part = positions[start : start + INDEX_CHUNK]
        # scores are `stamp`s of times of the same number of digits: their order is the times'
        found.append((max([scores[at - 1] for at in part]), part))
    return found


def encoded(writes: WritePlan) -> list[str]:
    """The batch as the write script reads it (`oauthproxy.storage.request_logs`): a JSON
    header, and the entries' keys and packed values, alternating, joined by `ENTRIES` (one
    argument: the client encodes a command's arguments one by one, at a microsecond each)."""
    scores, durations_ms, keys = writes.scores, writes.durations_ms, writes.keys
    header = {
        "n": len(scores),
        "runs": writes.runs,
        "buckets": writes.buckets,
        "groups": [(indexes, chunks(positions, scores)) for indexes, positions in writes.groups],
        "counters": writes.counters,
        "visitors": {key: [_ip_of(keys[p - 1]) for p in at] for key, at in writes.visitors.items()},
        "durations": {
            key: [durations_ms[p - 1] for p in sorted(at)[-DURATION_WINDOW:]]
            for key, at in writes.durations.items()
        },
    }
    parts = [""] * (2 * len(keys))  # key, packed value, key, ...: filled by slices, in C
    parts[::2], parts[1::2] = keys, writes.packed
    return [json.dumps(header, separators=(",", ":")), ENTRIES.join(parts)]
