"""The tick path's counts: gathered per drainer in plain integers, sent as one command.

A drainer adds each written step's figures here (no Redis, no allocation per tick) and sends
them with the next batch it sends anyway (``commands``: one ``EVALSHA`` of
``workers.metrics.counters.ADD``), so counting costs the tick path at most one command per
batch, never a round trip of its own, and a few integer additions per step.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

from workers.metrics.catalog import (
    CANDLES_CLOSED,
    ORDERS,
    TICK_LAG,
    TICKS_PROCESSED,
    TICKS_REJECTED,
)
from workers.metrics.counters import Adds, add_command, label_field

_FEW = 4
"""A step with at most this many entries places each one's age in its bucket; a longer one
(its entries are in stream order, so their ages descend) searches per bucket bound."""
_BOUNDS = TICK_LAG.scaled_buckets
_CREATED = label_field(ORDERS, ("created",))
_NONE = label_field(TICKS_PROCESSED, ())


def stream_times(entries: Sequence[tuple[Any, Any]]) -> list[int]:
    """The milliseconds part of each entry's stream id (``<ms>-<seq>``), in order."""
    if not entries:
        return []
    if isinstance(entries[0][0], bytes):
        return [int(entry_id.partition(b"-")[0]) for entry_id, _ in entries]
    return [int(entry_id.partition("-")[0]) for entry_id, _ in entries]


class TickTally:
    """What one drainer counted and has not sent yet."""

    __slots__ = (
        "_lag",
        "_lag_count",
        "_lag_sum",
        "candles",
        "orders_created",
        "processed",
        "rejected",
    )

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.processed = 0
        self.candles = 0
        self.orders_created = 0
        self.rejected: dict[str, int] = {}
        self._lag = [0] * (len(_BOUNDS) + 1)
        """Entries per bucket (not cumulative; the last one past every bound)."""
        self._lag_sum = 0
        self._lag_count = 0

    def __bool__(self) -> bool:
        return bool(
            self.processed
            or self.candles
            or self.orders_created
            or self.rejected
            or self._lag_count
        )

    def step(
        self,
        processed: int,
        rejected: Mapping[str, int],
        candles: int,
        times: Sequence[int],
        now_ms: int,
    ) -> None:
        """One written step: its good ticks, its rejections by reason, the candles it closed,
        and the stream times (ms, ascending) of the entries it consumed at ``now_ms``."""
        self.processed += processed
        self.candles += candles
        for reason, n in rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + n
        if times:
            self._ages(times, now_ms)

    def _ages(self, times: Sequence[int], now: int) -> None:
        counts, n = self._lag, len(times)
        if n <= _FEW:
            total = 0
            for t in times:
                age = now - t if t < now else 0
                counts[bisect_left(_BOUNDS, age)] += 1
                total += age
        else:
            within_before = 0
            for i, bound in enumerate(_BOUNDS):
                within = n - bisect_left(times, now - bound)
                counts[i] += within - within_before
                within_before = within
            counts[-1] += n - within_before
            past = bisect_right(times, now)
            total = past * now - sum(times[:past])
        self._lag_sum += total
        self._lag_count += n

    def take(self) -> Adds:
        """The counts as hash increments, and an empty tally."""
        adds: Adds = {}
        if self.processed:
            adds[TICKS_PROCESSED.key] = {_NONE: self.processed}
        if self.candles:
            adds[CANDLES_CLOSED.key] = {_NONE: self.candles}
        if self.orders_created:
            adds[ORDERS.key] = {_CREATED: self.orders_created}
        if self.rejected:
            adds[TICKS_REJECTED.key] = {
                label_field(TICKS_REJECTED, (reason,)): n for reason, n in self.rejected.items()
            }
        if self._lag_count:
            lag: dict[str, int] = {}
            cumulative = 0
            for i, n in enumerate(self._lag[:-1]):
                cumulative += n
                if cumulative:
                    lag[f"b{i}"] = cumulative
            lag["count"] = self._lag_count
            if self._lag_sum:
                lag["sum"] = self._lag_sum
            adds[TICK_LAG.key] = lag
        self._reset()
        return adds

    def commands(self, sha: str) -> list[tuple[Any, ...]]:
        """The one command that sends the counts gathered so far (none if there are none)."""
        return add_command(sha, self.take()) if self else []
