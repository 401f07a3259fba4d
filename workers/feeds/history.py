"""Historical warm-up, part of the market-data protocol: candles from a source's history.

A session's strategy first runs on its ``warmup_periods``-th closed candle
(``trading.decision.strategy_runs``). A session created (or recovered) while the market runs
gets the candles before that from its source's history (``HistorySource.history``: 1-minute
bars), folded exactly as the tick path folds the stream: each bar becomes its four ticks
(``workers.feeds.bars.bar_ticks``), encoded as stream entries and folded by
``trading.recovery.rewarm`` (validation included). So a session warmed from history holds the
candles, the partial candle and the tick counters a session that had read those bars from the
stream would hold, and decides the same from then on.

How much: ``closed`` whole candles before the candle in progress, plus that candle's bars so
far (the partial). Bars are asked for in minutes: ``(closed + 2) * minutes per candle``; a
candle holds at most that many bars, so at least ``closed`` whole candles come back after the
partial and the oldest candle (cut at an arbitrary bar, so dropped unless the source had no
more) are set aside.
"""

from __future__ import annotations

from datetime import datetime

from trading.market import Candle, StreamEntry
from trading.recovery import Rewarmed, rewarm
from trading.timeframes import Timeframe
from workers.feeds.bars import MINUTE, bars_ticks
from workers.feeds.base import HistorySource
from workers.ticks.publisher import encode_tick

_FIELDS = (b"t", b"p", b"s", b"b", b"a")


def candles_before_start(warmup_periods: int) -> int:
    """The whole candles a new session needs before the candle in progress: its strategy runs
    on the ``warmup_periods``-th closed candle, and the candle in progress closes live, so the
    ones before it (``warmup_periods - 1``). A session fed from the stream from those candles
    on decides on exactly the same candles with exactly the same history."""
    return max(warmup_periods - 1, 0)


def minutes_for(closed: int, timeframe: Timeframe) -> int:
    """The 1-minute bars to ask for ``closed`` whole candles plus the one in progress."""
    per_candle = max(1, timeframe.seconds // 60)
    return (closed + 2) * per_candle


def bar_entries(bars: list[Candle], instrument: str) -> list[StreamEntry]:
    """``bars`` as the stream entries the feed would have published (ids are placeholders)."""
    entries: list[StreamEntry] = []
    for tick in bars_ticks(bars, instrument):
        values = dict(zip(_FIELDS, (v.encode() for v in encode_tick(tick)), strict=True))
        entries.append((b"0-0", values))
    return entries


def warm_from_bars(
    bars: list[Candle], instrument: str, timeframe: Timeframe, closed: int, complete: bool
) -> Rewarmed:
    """Fold ``bars`` (oldest first) as the stream would and keep the last ``closed`` whole
    candles and the partial one. ``complete``: ``bars`` reach back to the source's first bar,
    so the oldest candle is whole."""
    folded = rewarm(instrument, bar_entries(bars, instrument), timeframe)
    kept = folded.closed if complete else folded.closed[1:]
    kept = kept[-closed:] if closed > 0 else ()
    return Rewarmed(
        closed=tuple(kept),
        partial=folded.partial,
        last_ms=folded.last_ms,
        ticks=folded.ticks,
        rejected=folded.rejected,
    )


def warm_from_history(
    source: HistorySource,
    instrument: str,
    until: datetime,
    timeframe: Timeframe,
    closed: int,
) -> Rewarmed:
    """The candles before ``until`` from ``source``: ``closed`` whole ones and the partial."""
    minutes = minutes_for(closed, timeframe)
    bars = [bar for bar in source.history(instrument, until, minutes) if bar.start < until]
    return warm_from_bars(bars, instrument, timeframe, closed, complete=len(bars) < minutes)


def minute_after(moment: datetime) -> datetime:
    """The end of ``moment``'s minute: history up to there holds the bar ``moment`` is in."""
    return moment.replace(second=0, microsecond=0) + MINUTE


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


__all__ = [
    "candles_before_start",
    "minute_after",
    "minute_of",
    "minutes_for",
    "warm_from_bars",
    "warm_from_history",
]
