"""Market data values: trade ticks and OHLCV candles. Prices are Decimal, times aware UTC.

A tick travels in an instrument's stream as the fields ``t`` (epoch ms), ``p``, ``s`` and,
where known, ``b`` and ``a`` (``workers.ticks.publisher.encode_tick``); ``entry_to_tick``
reads one back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
StreamEntry = tuple[bytes | str, Mapping[bytes, bytes]]
"""One entry of an instrument's stream: its id and its fields."""


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


def entry_to_tick(instrument: str, values: Mapping[bytes, bytes]) -> Tick | None:
    """The tick of one stream entry, or None when a field cannot be parsed."""
    try:
        ms = int(values[b"t"])
        price = Decimal(values[b"p"].decode())
        size = int(values[b"s"])
        raw_bid = values.get(b"b")
        raw_ask = values.get(b"a")
        bid = Decimal(raw_bid.decode()) if raw_bid else None
        ask = Decimal(raw_ask.decode()) if raw_ask else None
        time = EPOCH + timedelta(milliseconds=ms)
    except (KeyError, ValueError, InvalidOperation, OverflowError, UnicodeDecodeError):
        return None
    return Tick(instrument=instrument, time=time, price=price, size=size, bid=bid, ask=ask)
