"""Running a feed: read a source, pace it, publish it to the instrument streams in batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from trading.market import Tick
from workers.feeds.base import paced
from workers.ticks.publisher import TickPublisher, encode_tick

FLUSH_INTERVAL_S = 0.02


@dataclass(frozen=True, slots=True)
class FeedReport:
    published: int
    seconds: float

    @property
    def ticks_per_s(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else 0.0


def run_feed(
    ticks: Iterable[Tick],
    publisher: TickPublisher,
    speed: float | None,
    *,
    batch: int = 1000,
    on_progress: Callable[[int], None] | None = None,
) -> FeedReport:
    """Publish ``ticks`` paced at ``speed``; a batch goes out when full or 20 ms old."""
    started = time.monotonic()
    pending: dict[str, list[tuple[str, str, str, str, str]]] = {}
    count = 0
    waiting = 0
    last_flush = started

    def flush() -> None:
        nonlocal count, waiting, last_flush
        for instrument, rows in pending.items():
            if rows:
                publisher.publish_raw(instrument, rows)
                count += len(rows)
        pending.clear()
        waiting = 0
        last_flush = time.monotonic()
        if on_progress is not None:
            on_progress(count)

    for tick in paced(ticks, speed):
        pending.setdefault(tick.instrument, []).append(encode_tick(tick))
        waiting += 1
        if waiting >= batch or (
            speed is not None and time.monotonic() - last_flush > FLUSH_INTERVAL_S
        ):
            flush()
    flush()
    return FeedReport(count, time.monotonic() - started)
