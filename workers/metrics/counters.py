"""Counters kept in Redis: raised by every worker process, read by ``/metrics`` at scrape time.

Why Redis and not prometheus_client's own counters: the workers are Celery prefork processes
on many hosts, started and stopped at will. prometheus_client's multiprocess mode only adds up
the processes that share one directory on one host, and what a dead process counted lives in
its files there, lost when the host (or its container) is replaced; a scrape per worker host
would also need a port per host. Every worker already shares one Redis, and ``HINCRBY`` is
atomic: any process on any host adds to the one figure, which outlives every process. So a
metric is one hash (``tf:metric:<name>``, ``workers.metrics.catalog``), a label tuple is one
field, and the console's ``/metrics`` reads them all in one pipeline.

Writers add their increment to a pipeline or batch they already send wherever there is one
(the tick path gathers its counts in a ``workers.metrics.ticks.TickTally`` and sends them as
one command along with its next batch); elsewhere ``count`` is one command. A failed metric
write is logged and dropped, never raised: a count must never stop trading. Counts are raised
after what they count is durable (the fenced state write, the SQL row), so a crash in between
loses a count but never counts twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from workers.metrics.catalog import METRICS, Metric

log = logging.getLogger(__name__)

SEPARATOR = "|"
"""Between the label values of a field (no allowed value holds it)."""

ADD = """
-- KEYS: metric hashes   ARGV: per key: n, then n x (field, increment)
-- Adds a batch of counts to several metrics in one command.
local i = 1
for k = 1, #KEYS do
  local n = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, n do
    redis.call('HINCRBY', KEYS[k], ARGV[i], ARGV[i + 1])
    i = i + 2
  end
end
return #KEYS
"""


def label_field(metric: Metric, labels: Sequence[str]) -> str:
    """The hash field of ``labels`` (``ValueError`` if one is not in its fixed set)."""
    if len(labels) != len(metric.labels):
        raise ValueError(f"{metric.name} takes labels {metric.labels}, got {tuple(labels)}")
    for name, value, allowed in zip(metric.labels, labels, metric.values, strict=True):
        if value not in allowed:
            raise ValueError(f"{metric.name}: {name}={value!r} is not one of {allowed}")
    return SEPARATOR.join(labels)


def count(sink: redis.Redis, metric: Metric, *labels: str, n: int = 1) -> None:
    """Add ``n`` to ``metric`` with ``labels``. ``sink`` is a client (one command now) or a
    pipeline the caller executes (then the command goes with it)."""
    if metric.kind != "counter":
        raise ValueError(f"{metric.name} is a {metric.kind}, not a counter")
    field = label_field(metric, labels)
    if n:
        _write(sink, "hincrby", metric.key, field, n)


def count_each(client: redis.Redis, counts: Iterable[tuple[Metric, Sequence[str]]]) -> None:
    """``count`` (one each) of several metrics and labels, in one pipeline: one round trip."""
    adds: Adds = {}
    for metric, labels in counts:
        if metric.kind != "counter":
            raise ValueError(f"{metric.name} is a {metric.kind}, not a counter")
        fields = adds.setdefault(metric.key, {})
        field = label_field(metric, labels)
        fields[field] = fields.get(field, 0) + 1
    send(client, adds)


def set_gauge(sink: redis.Redis, metric: Metric, value: float, *labels: str) -> None:
    """Set a gauge kept in Redis (such as a last success time) to ``value``."""
    if metric.kind != "gauge":
        raise ValueError(f"{metric.name} is a {metric.kind}, not a gauge")
    _write(sink, "hset", metric.key, label_field(metric, labels), repr(float(value)))


def mark_now(sink: redis.Redis, metric: Metric, *labels: str) -> None:
    """A "last time" gauge set to now (seconds since the epoch)."""
    set_gauge(sink, metric, time.time(), *labels)


def _write(sink: redis.Redis, method: str, *args: Any) -> None:
    try:
        getattr(sink, method)(*args)
    except redis.RedisError as exc:
        log.warning("metric %s not written: %s", args[0], exc)


Adds = dict[str, dict[str, int]]
"""Counts to add: by metric hash, by field."""


def add_command(sha: str, adds: Adds) -> list[tuple[Any, ...]]:
    """The one ``EVALSHA`` of ``ADD`` (registered as ``sha``) that adds ``adds`` (none when
    there is nothing to add): a batch of counts as one command of a batch already sent."""
    keys = [key for key, fields in adds.items() if fields]
    if not keys:
        return []
    args: list[str | int] = []
    for key in keys:
        fields = adds[key]
        args.append(len(fields))
        for field, n in fields.items():
            args += [field, n]
    return [("EVALSHA", sha, len(keys), *keys, *args)]


def send(client: redis.Redis, adds: Adds) -> None:
    """Add ``adds`` now (one pipeline of ``HINCRBY``); logged if it fails."""
    if not any(adds.values()):
        return
    try:
        with client.pipeline(transaction=False) as pipe:
            for key, fields in adds.items():
                for field, n in fields.items():
                    pipe.hincrby(key, field, n)
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("metric counts not written: %s", exc)


# --------------------------------------------------------------------------- reading


Raw = dict[str, dict[str, str]]
"""Each metric's hash by metric name, as text."""


def read_all(client: redis.Redis, metrics: Iterable[Metric] = METRICS) -> Raw:
    """Every metric's hash, in one pipeline (what ``/metrics`` reads per scrape)."""
    wanted = list(metrics)
    with client.pipeline(transaction=False) as pipe:
        for metric in wanted:
            pipe.hgetall(metric.key)
        replies: list[Mapping[bytes, bytes]] = pipe.execute()
    return {
        metric.name: {_text(k): _text(v) for k, v in reply.items()}
        for metric, reply in zip(wanted, replies, strict=True)
    }


def labels_of(metric: Metric, field: str) -> tuple[str, ...] | None:
    """The label values of a counter's or gauge's field, or None if it is not one (a value
    outside the allowed set, from an older version, is left out)."""
    values = tuple(field.split(SEPARATOR)) if metric.labels else ()
    if len(values) != len(metric.labels):
        return None
    if any(v not in allowed for v, allowed in zip(values, metric.values, strict=True)):
        return None
    return values


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


__all__ = [
    "ADD",
    "Adds",
    "Raw",
    "add_command",
    "count",
    "label_field",
    "labels_of",
    "mark_now",
    "read_all",
    "send",
    "set_gauge",
]
