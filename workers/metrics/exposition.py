"""The counters kept in Redis as Prometheus metric families (``/metrics`` yields them)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import product

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.core import (
    Metric as Family,
)

from workers.metrics.catalog import METRICS, Metric
from workers.metrics.counters import SEPARATOR, Raw, labels_of


def families(raw: Raw) -> Iterator[Family]:
    """One family per metric of the catalog, from the hashes ``read_all`` read."""
    for metric in METRICS:
        fields = raw.get(metric.name, {})
        if metric.kind == "counter":
            yield _counter(metric, fields)
        elif metric.kind == "gauge":
            yield _gauge(metric, fields)
        else:
            yield _histogram(metric, fields)


def _counter(metric: Metric, fields: dict[str, str]) -> CounterMetricFamily:
    """Every allowed label tuple, at zero until counted."""
    family = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
    for labels in product(*metric.values):
        family.add_metric(list(labels), int(fields.get(SEPARATOR.join(labels), "0")))
    return family


def _gauge(metric: Metric, fields: dict[str, str]) -> GaugeMetricFamily:
    """Only the label tuples set (a last success time that never happened has no sample)."""
    family = GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
    for field, value in sorted(fields.items()):
        labels = labels_of(metric, field)
        if labels is not None:
            family.add_metric(list(labels), float(value))
    return family


def _histogram(metric: Metric, fields: dict[str, str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(metric.name, metric.help)
    count = int(fields.get("count", "0"))
    buckets: list[tuple[str, float]] = [
        (_bound(bound), int(fields.get(f"b{i}", "0"))) for i, bound in enumerate(metric.buckets)
    ]
    buckets.append(("+Inf", count))
    family.add_metric([], buckets, int(fields.get("sum", "0")) / metric.scale)
    return family


def _bound(bound: float) -> str:
    return repr(float(bound))
