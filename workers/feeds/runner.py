"""Running a feed: read a source, pace it, publish it to the instrument streams in batches.

A feed that can read its source again (``FeedAgain``: replay files, a seeded generator)
numbers and guards its batches, so it notices a Redis that lost its streams (restarted empty:
``StreamLost``), and publishes each lost instrument again from where its rebuilt sessions
resume (``workers.feeds.resume``): the source is read again from its start, what lies before
that point (for the lost instruments) or was published already (for the others) is skipped,
what the feed had got to is published as fast as it can, and the rest at its pace again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from trading.market import Tick, epoch_ms
from workers.feeds.base import paced
from workers.ticks.publisher import RawTick, StreamLost, TickPublisher, encode_tick

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.02


@dataclass(frozen=True, slots=True)
class FeedReport:
    published: int
    seconds: float
    lost: int = 0
    """Times a stream was found lost and its instrument published again."""

    @property
    def ticks_per_s(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class FeedAgain:
    """What a feed needs to publish again after Redis lost its streams: its source's ticks
    read again from their start, and the data time (epoch ms) to publish an instrument again
    from (``workers.feeds.resume.resume_ms``)."""

    reread: Callable[[], Iterable[Tick]]
    from_ms: Callable[[str], int]


Indexed = tuple[Tick, int]
"""A tick and its place among its instrument's ticks in the source."""


@dataclass(slots=True)
class _Progress:
    published: int = 0
    lost: int = 0
    next_index: dict[str, int] = field(default_factory=dict)
    """Per instrument, the place of the first of its ticks not published yet."""
    newest_ms: int = 0
    """The newest data time published."""


def run_feed(
    ticks: Iterable[Tick],
    publisher: TickPublisher,
    speed: float | None,
    *,
    batch: int = 1000,
    on_progress: Callable[[int], None] | None = None,
    again: FeedAgain | None = None,
) -> FeedReport:
    """Publish ``ticks`` paced at ``speed``; a batch goes out when full or 20 ms old. With
    ``again``, an instrument whose stream was lost is published again (see the module)."""
    started = time.monotonic()
    progress = _Progress()
    source = _paced(_indexed(ticks), speed)
    while True:
        try:
            _publish(source, publisher, speed, batch, on_progress, progress, again is not None)
            break
        except StreamLost as lost:
            if again is None:
                raise
            points = {}
            for name in lost.instruments:
                publisher.restart_numbering(name)
                points[name] = again.from_ms(name)
                log.warning("%s: stream lost; publishing again from %d", name, points[name])
            progress.lost += 1
            behind = _skipping(_indexed(again.reread()), progress.next_index, points)
            source = _catching_up(behind, progress.newest_ms, speed)
    return FeedReport(progress.published, time.monotonic() - started, progress.lost)


def _publish(
    source: Iterator[Indexed],
    publisher: TickPublisher,
    speed: float | None,
    batch: int,
    on_progress: Callable[[int], None] | None,
    progress: _Progress,
    guard: bool,
) -> None:
    pending: dict[str, list[Indexed]] = {}
    waiting = 0
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal waiting, last_flush
        for instrument in list(pending):
            items = pending.pop(instrument)
            rows: list[RawTick] = [encode_tick(tick) for tick, _ in items]
            at = publisher.number(instrument, len(rows)) if guard else None
            publisher.publish_raw(instrument, rows, at, guard=guard)
            progress.published += len(rows)
            progress.next_index[instrument] = items[-1][1] + 1
            progress.newest_ms = max(progress.newest_ms, epoch_ms(items[-1][0].time))
        waiting = 0
        last_flush = time.monotonic()
        if on_progress is not None:
            on_progress(progress.published)

    for item in source:
        pending.setdefault(item[0].instrument, []).append(item)
        waiting += 1
        if waiting >= batch or (
            speed is not None and time.monotonic() - last_flush > FLUSH_INTERVAL_S
        ):
            flush()
    flush()


def _indexed(ticks: Iterable[Tick]) -> Iterator[Indexed]:
    seen: dict[str, int] = {}
    for tick in ticks:
        index = seen.get(tick.instrument, 0)
        seen[tick.instrument] = index + 1
        yield tick, index


def _paced(items: Iterable[Indexed], speed: float | None) -> Iterator[Indexed]:
    return paced(items, speed, time_of=_time_of)


def _time_of(item: Indexed) -> datetime:
    return item[0].time


def _skipping(
    items: Iterator[Indexed], next_index: Mapping[str, int], points: Mapping[str, int]
) -> Iterator[Indexed]:
    """The source read again: a lost instrument's ticks from its point on, another's from the
    first not published yet."""
    for tick, index in items:
        point = points.get(tick.instrument)
        if point is not None:
            if epoch_ms(tick.time) >= point:
                yield tick, index
        elif index >= next_index.get(tick.instrument, 0):
            yield tick, index


def _catching_up(
    items: Iterator[Indexed], newest_ms: int, speed: float | None
) -> Iterator[Indexed]:
    """What lies up to ``newest_ms`` (where the feed had got) as fast as it can, the rest
    paced again."""
    for tick, index in items:
        yield tick, index
        if epoch_ms(tick.time) > newest_ms:
            break
    yield from _paced(items, speed)
