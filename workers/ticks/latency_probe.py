"""The latency probes (``TRADEFLEET_LATENCY_PROBE``, set by ``tradefleet bench``).

Tick to decision: each written step's oldest tick carries its due wall time (``t``, epoch ms);
its age when the step's state write completed is the tick-to-decision latency. A drainer
gathers the ages and sends them along with its next claim (no round trip of their own) to one
Redis list.

Tick to order accepted: an order's decision time is the close of the candle its step closed,
which the benchmark's boundary tick carries as both its data time and its due wall time; the
send task records the order's age when the broker first accepted it (``record_accepted``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

LATENCY_KEY = "tf:latency"
"""Ages in microseconds, newest first, of the oldest tick of each written step."""
ORDERS_LATENCY_KEY = "tf:latency:orders"
"""Ages in microseconds, newest first, of each order's decision time when the broker accepted
it."""
LATENCY_KEEP = 2_000_000
"""Samples kept: more than a minute at 10,000 one-tick steps a second (a latency run)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LatencyProbe:
    """The samples of one drainer not sent yet."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: list[int] = []

    def __bool__(self) -> bool:
        return bool(self._samples)

    def sample(self, oldest: Mapping[bytes, bytes]) -> None:
        """The age of the step's oldest tick (its fields), now that its write completed."""
        try:
            tick_ms = int(oldest[b"t"])
        except (KeyError, ValueError):
            return
        self._samples.append(time.time_ns() // 1_000 - tick_ms * 1_000)

    def commands(self) -> list[tuple[Any, ...]]:
        """The commands that send the samples gathered so far (none if there are none)."""
        if not self._samples:
            return []
        samples, self._samples = self._samples, []
        return [("LPUSH", LATENCY_KEY, *samples), ("LTRIM", LATENCY_KEY, 0, LATENCY_KEEP - 1)]


def record_accepted(client: redis.Redis, decided_at: datetime) -> None:
    """The age of an order's decision time now that the broker accepted it (one command)."""
    decided_us = (decided_at - _EPOCH) // timedelta(microseconds=1)
    age_us = time.time_ns() // 1_000 - decided_us
    client.lpush(ORDERS_LATENCY_KEY, age_us)
