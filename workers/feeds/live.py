"""Running a live source: each completed bar's four ticks published as one batch (one script
call: the bar enters the stream whole), the stall watch fed by every bar or quote, and the
resume point read from the instrument stream (a restarted feed neither repeats nor skips)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from trading.market import Tick
from workers.feeds.stall import StallWatch
from workers.feeds.tradovate import MarketDataFeed, TradovateSource, stream_resume_point
from workers.ticks.keys import stream_key
from workers.ticks.publisher import TickPublisher


@dataclass
class LiveCounters:
    bars: int = 0
    ticks: int = 0
    last: list[Tick] = field(default_factory=list)


def live_feed(
    source: TradovateSource,
    publisher: TickPublisher,
    watch: StallWatch | None,
    stop: threading.Event,
    **kwargs: object,
) -> tuple[MarketDataFeed, LiveCounters]:
    """The live loop of ``source`` publishing through ``publisher`` (call ``run()`` on it)."""
    instrument = source.config.contract
    counters = LiveCounters()
    resume = stream_resume_point(publisher.client, stream_key(instrument))

    def on_ticks(ticks: tuple[Tick, ...]) -> None:
        publisher.publish(instrument, ticks)
        counters.bars += 1
        counters.ticks += len(ticks)
        counters.last = list(ticks)

    def on_data() -> None:
        if watch is not None:
            watch.data()

    loop = source.feed(on_ticks, stop, resume_after=resume, on_data=on_data, **kwargs)
    return loop, counters
