"""Prometheus metrics of this replica, answered from memory: `/metrics` never needs Redis.

Request counts and latencies come from the request log's entries, counted by its batch task
(`RequestLogger.flush`), so the request path pays nothing more for them. Gauges (open
connections, running instances, the logger's own counters) are read when Prometheus scrapes.
The registry is this gateway's own, not prometheus-client's global one: two gateways in one
process (the tests) never share a counter.

Hostnames become labels only when a proxy serves them: an unknown Host is counted under `other`,
so a client cannot grow the number of series by sending made-up hostnames. A hostname's series
go when its proxy is no longer served (at the next scrape), so an owner cannot grow them either,
by making and deleting proxies within its quota.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from oauthproxy.logs.records import REQUEST_KINDS, RequestEntry

if TYPE_CHECKING:
    from oauthproxy.logs.logger import RequestLogger

OTHER_HOST = "other"
GRANT_EVENTS = "oauth.token_"
"""The events (`oauth.token_issued`, ...) the token counter counts, by what follows."""
UPSTREAM_FAILURES = {"bad_gateway": "error", "gateway_timeout": "timeout"}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Expiries(Protocol):
    @property
    def times(self) -> Mapping[str, float]: ...


class Served(Protocol):
    """An instance, as the gauges see it."""

    @property
    def connection_count(self) -> int: ...

    @property
    def active_requests(self) -> int: ...


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "oauthproxy_requests",
            "Requests answered on the public ports, by hostname and status class",
            ["host", "status_class"],
            registry=self.registry,
        )
        self.latency = Latency()
        self.upstream_failures = Counter(
            "oauthproxy_upstream_failures",
            "Requests whose upstream failed (error: 502) or did not answer in time (timeout: 504)",
            ["host", "kind"],
            registry=self.registry,
        )
        self.oauth_tokens = Counter(
            "oauthproxy_oauth_tokens",
            "Token requests of the authorization server: issued, refreshed, refused, revoked",
            ["outcome"],
            registry=self.registry,
        )
        self.instances: Mapping[str, Served] = {}
        """The hostname → instance table, once the supervisor runs."""
        self._series: set[tuple[Counter, str, str]] = set()
        """Each (counter, hostname, other label) a served hostname labels (see `_prune`)."""
        self.certificates: Expiries | None = None
        """The certificate manager's expiry times, once it runs."""
        self.logger: RequestLogger | None = None
        self.merge: Callable[[bytes], bytes] | None = None
        """Adds what other processes counted (the workers, with WORKERS above 1)."""
        self._token_hash = b""
        self.registry.register(_Gauges(self))
        self.registry.register(self.latency)

    def allow(self, admin_secret: str) -> None:
        """The one token `/metrics` accepts (checked in memory, so Redis is not needed)."""
        self._token_hash = hashlib.sha256(admin_secret.encode()).digest()

    def allows(self, secret: str) -> bool:
        given = hashlib.sha256(secret.encode()).digest()
        return bool(self._token_hash) and hmac.compare_digest(given, self._token_hash)

    def count(self, batch: Sequence[RequestEntry]) -> None:
        """Count a batch of finished requests (called by the request log's batch task): tallied
        by (hostname, status, reason) first, so each counter moves once per batch."""
        tally: dict[tuple[str, int, str], int] = {}
        durations = []
        for entry in batch:
            if entry.kind not in REQUEST_KINDS:
                if entry.kind.startswith(GRANT_EVENTS):
                    self.oauth_tokens.labels(entry.kind.removeprefix(GRANT_EVENTS)).inc()
                continue
            answer = (entry.host, entry.status, entry.reason)
            tally[answer] = tally.get(answer, 0) + 1
            durations.append(entry.duration)
        self.latency.observe(durations)
        served = self.instances
        answered: Tally[tuple[str, str]] = Tally()
        failed: Tally[tuple[str, str]] = Tally()
        for (host, status, reason), number in tally.items():
            label = host if host in served else OTHER_HOST
            answered[(label, f"{status // 100}xx")] += number
            if reason in UPSTREAM_FAILURES:
                failed[(label, UPSTREAM_FAILURES[reason])] += number
        for (host, status_class), number in answered.items():
            self.requests.labels(host, status_class).inc(number)
            self._series.add((self.requests, host, status_class))
        for (host, kind), number in failed.items():
            self.upstream_failures.labels(host, kind).inc(number)
            self._series.add((self.upstream_failures, host, kind))

    def _prune(self) -> None:
        """Remove the series of hostnames no longer served (deleted proxies)."""
        served = self.instances
        gone = {s for s in self._series if s[1] not in served and s[1] != OTHER_HOST}
        for counter, host, label in gone:
            with contextlib.suppress(KeyError):
                counter.remove(host, label)
        self._series -= gone

    def exposition(self) -> tuple[bytes, str]:
        """The text format Prometheus scrapes, and its content type."""
        self._prune()
        body = generate_latest(self.registry)
        return (body if self.merge is None else self.merge(body)), CONTENT_TYPE_LATEST


class Latency(Collector):
    """The request duration histogram, observed a batch at a time (prometheus-client's
    `Histogram.observe` takes a lock and walks the buckets in Python for each value)."""

    NAME = "oauthproxy_request_duration_seconds"

    def __init__(self) -> None:
        self._counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._sum = 0.0

    def observe(self, durations: Sequence[float]) -> None:
        counts = self._counts
        for duration in durations:
            counts[bisect_left(LATENCY_BUCKETS, duration)] += 1
        self._sum += sum(durations)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative, buckets = 0, []
        for bound, count in zip((*LATENCY_BUCKETS, math.inf), self._counts, strict=True):
            cumulative += count
            buckets.append((repr(float(bound)) if bound != math.inf else "+Inf", cumulative))
        yield HistogramMetricFamily(
            self.NAME,
            "Time from a request's head to the end of its answer (streams: their whole life)",
            buckets=buckets,
            sum_value=self._sum,
        )


class _Gauges(Collector):
    """What is read at scrape time rather than counted."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        instances = list(self._metrics.instances.values())
        yield GaugeMetricFamily(
            "oauthproxy_instances_running", "Hostnames this replica serves", value=len(instances)
        )
        yield GaugeMetricFamily(
            "oauthproxy_open_connections",
            "Client connections the instances hold (HTTP/1.1 waiting or being answered, and "
            "HTTP/2 with a stream in flight, counted once per hostname it serves)",
            value=sum(instance.connection_count for instance in instances),
        )
        yield GaugeMetricFamily(
            "oauthproxy_active_requests",
            "Requests being answered (HTTP/1.1 requests and HTTP/2 streams)",
            value=sum(instance.active_requests for instance in instances),
        )
        if (certificates := self._metrics.certificates) is not None:
            expiry = GaugeMetricFamily(
                "oauthproxy_certificate_expiry_timestamp_seconds",
                "When each issued certificate expires (its not-after), as the renewal loop "
                "last saw it",
                labels=["name"],
            )
            for name, when in sorted(certificates.times.items()):
                expiry.add_metric([name], when)
            yield expiry
        logger = self._metrics.logger
        if logger is None:
            return
        for name, value, what in (
            ("written", logger.written, "Request log entries written to Redis"),
            (
                "dropped",
                logger.dropped,
                "Request log entries dropped (Redis slow, away, or over LOG_MAX_REDIS_MEMORY_MB)",
            ),
            ("buffered", logger.buffered, "Request log entries waiting for the next batch"),
        ):
            yield GaugeMetricFamily(f"oauthproxy_request_log_{name}", what, value=value)
