"""Indicators over Decimal prices: pure, and each reads only the last few candles it needs.

Arithmetic runs in a fixed decimal context (28 digits, half-even) so a result never depends
on whatever context the calling thread has set.

ATR here is the *simple* average true range: the arithmetic mean of the last ``period`` true
ranges (it needs ``period + 1`` candles, the extra one for the first previous close). Wilder's
smoothing would depend on the whole history; the simple form depends only on the window, so
the same candles always give the same stop, whatever history a session kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, localcontext

from trading.market import Candle

_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN)


def _need(count: int, period: int, what: str) -> None:
    if period < 1:
        raise ValueError(f"{what}: period must be >= 1, got {period}")
    if count < period:
        raise ValueError(f"{what}: needs {period} values, got {count}")


def sma(values: Sequence[Decimal], period: int) -> Decimal:
    """Simple moving average of the last ``period`` values."""
    _need(len(values), period, "sma")
    with localcontext(_CONTEXT):
        return sum(values[-period:], Decimal(0)) / period


def donchian_high(candles: Sequence[Candle], period: int) -> Decimal:
    """Highest high of the last ``period`` candles."""
    _need(len(candles), period, "donchian_high")
    return max(candle.high for candle in candles[-period:])


def donchian_low(candles: Sequence[Candle], period: int) -> Decimal:
    """Lowest low of the last ``period`` candles."""
    _need(len(candles), period, "donchian_low")
    return min(candle.low for candle in candles[-period:])


def true_range(candle: Candle, previous_close: Decimal) -> Decimal:
    """max(high - low, |high - previous close|, |low - previous close|)."""
    with localcontext(_CONTEXT):
        return max(
            candle.high - candle.low,
            abs(candle.high - previous_close),
            abs(candle.low - previous_close),
        )


def atr(candles: Sequence[Candle], period: int) -> Decimal:
    """Simple average true range of the last ``period`` candles (reads ``period + 1``)."""
    _need(len(candles), period + 1, "atr")
    window = candles[-(period + 1) :]
    with localcontext(_CONTEXT):
        ranges = [true_range(window[i], window[i - 1].close) for i in range(1, len(window))]
        return sum(ranges, Decimal(0)) / period


def round_to_tick(price: Decimal, tick_size: Decimal, *, down: bool) -> Decimal:
    """``price`` on the tick grid: the tick at or below it (``down``) or at or above it."""
    if not tick_size.is_finite() or tick_size <= 0:
        raise ValueError(f"tick size must be a positive number, got {tick_size}")
    with localcontext(_CONTEXT):
        ticks = (price / tick_size).to_integral_value(
            rounding=ROUND_FLOOR if down else ROUND_CEILING
        )
        return ticks * tick_size
