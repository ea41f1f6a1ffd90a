"""The parent's `/metrics` with WORKERS above 1: its own metrics and every worker's, merged.

The workers count the requests, so their series matter most; each worker's are shown with a
`worker` label (its index) in the families the parent has too, so the text stays one family per
name as Prometheus requires. Sum them in a query (`sum without (worker) (...)`); a restarted
worker starts its counters again from 0, which Prometheus reads as a counter reset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector


def merged_exposition(own: bytes, workers: Callable[[], Sequence[tuple[int, str]]]) -> bytes:
    """`own` (the parent's exposition) with each worker's samples added under `worker="i"`."""
    families: dict[str, Metric] = {}
    parts: list[tuple[dict[str, str], str]] = [({}, own.decode())] + [
        ({"worker": str(i)}, text) for i, text in workers()
    ]
    for extra, text in parts:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                merged.add_sample(
                    sample.name, {**sample.labels, **extra}, sample.value, sample.timestamp
                )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families
