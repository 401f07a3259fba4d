"""Market data values: trade ticks and OHLCV candles. Prices are Decimal, times aware UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade print (optionally with the touch) for one instrument (contract symbol)."""

    instrument: str
    time: datetime
    price: Decimal
    size: int
    bid: Decimal | None = None
    ask: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bar; ``start`` is the aware-UTC open time of its period."""

    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


def epoch_ms(t: datetime) -> int:
    """Milliseconds since the epoch of an aware time (exact integer arithmetic)."""
    delta = t - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
