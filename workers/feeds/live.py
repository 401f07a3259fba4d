"""Running a live source: each completed bar's four ticks published as one batch (one script
call: the bar enters the stream whole), the stall watch fed by every bar or quote, and the
resume point read from the instrument stream (a restarted feed neither repeats nor skips).

The batches are numbered and guarded (``workers.ticks.publisher``): when Redis lost the stream
(restarted empty), the batch that finds it so appends nothing (``StreamLost``), and the feed
publishes the instrument again from where its rebuilt sessions resume (``again``:
``workers.feeds.resume.resume_ms``). The vendor keeps the history: the feed charts again from
the bar holding that point, drops the ticks before it, and goes on live from there, so the
stream holds again the entries (and ids) it had. With no point to resume from (no session
snapshot), the batch is published again as it is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from trading.market import EPOCH, Tick, epoch_ms
from workers.feeds.stall import StallWatch
from workers.feeds.tradovate import MarketDataFeed, TradovateSource, stream_resume_point
from workers.ticks.keys import stream_key
from workers.ticks.publisher import StreamLost, TickPublisher, encode_tick


@dataclass
class LiveCounters:
    bars: int = 0
    ticks: int = 0
    last: list[Tick] = field(default_factory=list)
    lost: int = 0
    """How many times the instrument's stream was found lost (and published again)."""


def live_feed(
    source: TradovateSource,
    publisher: TickPublisher,
    watch: StallWatch | None,
    stop: threading.Event,
    again: Callable[[str], int] | None = None,
    **kwargs: object,
) -> tuple[MarketDataFeed, LiveCounters]:
    """The live loop of ``source`` publishing through ``publisher`` (call ``run()`` on it);
    ``again``: the data time (epoch ms) to publish the instrument again from when its stream
    was lost (see the module; None: such a batch is published as it is)."""
    instrument = source.config.contract
    counters = LiveCounters()
    resume = stream_resume_point(publisher.client, stream_key(instrument))
    since_ms = [0]
    """Ticks before this data time are not published (set when the stream is published
    again from a point inside a bar)."""
    loops: list[MarketDataFeed] = []

    def publish(ticks: tuple[Tick, ...]) -> None:
        rows = [encode_tick(t) for t in ticks if epoch_ms(t.time) >= since_ms[0]]
        if rows:
            at = publisher.number(instrument, len(rows))
            publisher.publish_raw(instrument, rows, at, guard=again is not None)

    def on_ticks(ticks: tuple[Tick, ...]) -> None:
        try:
            publish(ticks)
        except StreamLost:
            assert again is not None
            publisher.restart_numbering(instrument)
            from_ms = again(instrument)
            counters.lost += 1
            if from_ms > 0:
                since_ms[0] = from_ms
                if from_ms < epoch_ms(ticks[0].time):
                    loops[0].rewind(EPOCH + timedelta(milliseconds=from_ms))
            publish(ticks)
        counters.bars += 1
        counters.ticks += len(ticks)
        counters.last = list(ticks)

    def on_data() -> None:
        if watch is not None:
            watch.data()

    loop = source.feed(on_ticks, stop, resume_after=resume, on_data=on_data, **kwargs)
    loops.append(loop)
    return loop, counters
