"""Minute bars as ticks: the one way every source turns a 1-minute bar into stream entries.

A bar becomes four ticks so that candles folded from them with ``trading.candles.fold_ticks``
reproduce the bar exactly, for any timeframe of whole minutes:

- always in the order open, high, low, close, stamped +0 s, +15 s, +30 s, +45 s into the
  bar's minute (the +0 s tick opens the bar's candle, all stay inside it);
- the bar's volume split as an integer: ``volume // 4`` each, the remainder given one unit at a
  time to the first ticks, so the sizes sum to the bar volume exactly (a zero-volume bar gives
  four zero-size ticks);
- every tick carries the same bid/ask, the caller's (``None`` where unknown).

The replay (``workers.feeds.replay``) and the live Tradovate source (``workers.feeds.tradovate``)
both publish bars through ``bar_ticks``; the historical warm-up (``workers.feeds.history``)
folds history through it too, so a candle warmed from history is the candle the stream would
have made.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from decimal import Decimal

from trading.market import Candle, Tick

BAR_TICK_OFFSETS = (
    timedelta(seconds=0),
    timedelta(seconds=15),
    timedelta(seconds=30),
    timedelta(seconds=45),
)
MINUTE = timedelta(minutes=1)


def split_volume(volume: int, parts: int = len(BAR_TICK_OFFSETS)) -> tuple[int, ...]:
    """``volume`` as ``parts`` non-negative integers summing to it exactly (first ones larger)."""
    base, remainder = divmod(volume, parts)
    return tuple(base + (1 if i < remainder else 0) for i in range(parts))


def bar_ticks(
    bar: Candle, instrument: str, bid: Decimal | None = None, ask: Decimal | None = None
) -> tuple[Tick, ...]:
    """The four ticks (open, high, low, close) whose 1-minute candle is exactly ``bar``."""
    prices = (bar.open, bar.high, bar.low, bar.close)
    sizes = split_volume(bar.volume)
    return tuple(
        Tick(instrument, bar.start + offset, price, size, bid, ask)
        for offset, price, size in zip(BAR_TICK_OFFSETS, prices, sizes, strict=True)
    )


def bars_ticks(bars: Iterable[Candle], instrument: str) -> Iterator[Tick]:
    """``bar_ticks`` of each bar in turn, without bid/ask (history has no touch)."""
    for bar in bars:
        yield from bar_ticks(bar, instrument)
