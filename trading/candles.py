"""Candles from ticks, for the hot path: fold only the new ticks into the carried partial candle.

- A candle closes when a tick arrives in a later bucket; a tick exactly on a boundary opens
  the new candle. Candles are sparse like the source: no empty candle is invented for a
  period without ticks.
- ``fold_ticks`` does work proportional to the number of new ticks, never to the history:
  the caller carries ``partial`` (and ``last_time``) from one call to the next, and folding a
  tick sequence in several batches gives exactly the result of folding it in one.
- Ticks from outside are parsed with ``parse_tick_fields`` (raises ``BadTick("unparseable")``)
  and checked with ``validate_tick`` (returns a reason or ``None``) before they are folded;
  a rejected tick is counted, never fatal.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from trading.exceptions import BadTick
from trading.market import Candle, Tick
from trading.timeframes import Timeframe, parse_timeframe

__all__ = [
    "BAD_PRICE",
    "BAD_SIZE",
    "DUPLICATE",
    "MAX_TICK_SIZE",
    "REJECT_REASONS",
    "TIME_BACKWARDS",
    "UNKNOWN_INSTRUMENT",
    "UNPARSEABLE",
    "FoldResult",
    "Timeframe",
    "fold_ticks",
    "parse_tick_fields",
    "parse_timeframe",
    "tick_fields",
    "validate_tick",
]

BAD_PRICE: Final = "bad_price"
BAD_SIZE: Final = "bad_size"
TIME_BACKWARDS: Final = "time_backwards"
UNKNOWN_INSTRUMENT: Final = "unknown_instrument"
UNPARSEABLE: Final = "unparseable"
DUPLICATE: Final = "duplicate"
"""A stream entry its feed sent again (a batch re-sent after a lost reply): refused where it
is published (``workers.ticks.publisher``), so no session ever reads it."""
REJECT_REASONS: Final = (
    BAD_PRICE,
    BAD_SIZE,
    DUPLICATE,
    TIME_BACKWARDS,
    UNKNOWN_INSTRUMENT,
    UNPARSEABLE,
)
MAX_TICK_SIZE: Final = 10**9
"""The largest size one print may have. No futures print is a billion lots (a busy ES day
trades a few million in all), so a larger one is a feed fault, not a trade; the cap also keeps
a candle's volume, the sum of its prints, exact for any reader that holds numbers as doubles
(2**53: millions of capped prints per candle)."""


@dataclass(frozen=True, slots=True)
class FoldResult:
    """What folding a batch of ticks produced.

    ``closed``: candles completed by this batch, oldest first. ``partial``: the open candle to
    carry into the next call. ``last_time``: the time of the last tick folded so far (carried
    from the previous call when the batch is empty).
    """

    closed: tuple[Candle, ...]
    partial: Candle | None
    last_time: datetime | None


def fold_ticks(
    partial: Candle | None,
    ticks: Iterable[Tick],
    timeframe: Timeframe | str,
    *,
    last_time: datetime | None = None,
) -> FoldResult:
    """Fold ``ticks`` (time-ordered, already validated) into candles of ``timeframe``.

    ``partial`` is the open candle from the previous call (or ``None``); ``last_time`` the
    previous call's ``FoldResult.last_time``. A tick earlier than the last one folded, or
    earlier than the open candle's bucket, is a caller error: ``BadTick("time_backwards")`` is
    raised (``validate_tick`` filters such ticks out beforehand).
    """
    tf = parse_timeframe(timeframe) if isinstance(timeframe, str) else timeframe
    step = tf.delta
    closed: list[Candle] = []
    last = last_time
    if partial is not None:
        start = partial.start
        end = start + step
        o, h, lo, c, v = partial.open, partial.high, partial.low, partial.close, partial.volume
        have = True
    else:
        have = False
    for tick in ticks:
        t = tick.time
        if last is not None and t < last:
            raise BadTick(TIME_BACKWARDS, f"{t.isoformat()} < {last.isoformat()}")
        last = t
        price = tick.price
        if have and start <= t < end:
            if price > h:
                h = price
            elif price < lo:
                lo = price
            c = price
            v += tick.size
            continue
        if have:
            if t < start:
                raise BadTick(TIME_BACKWARDS, f"{t.isoformat()} before candle {start.isoformat()}")
            closed.append(Candle(start=start, open=o, high=h, low=lo, close=c, volume=v))
        start = tf.bucket_start(t)
        end = start + step
        o = h = lo = c = price
        v = tick.size
        have = True
    new_partial = Candle(start=start, open=o, high=h, low=lo, close=c, volume=v) if have else None
    return FoldResult(closed=tuple(closed), partial=new_partial, last_time=last)


def validate_tick(
    tick: Tick,
    last_time: datetime | None,
    known_instruments: Collection[str] | None = None,
) -> str | None:
    """The reason ``tick`` must be rejected, or ``None`` if it may be folded.

    Reasons: ``unknown_instrument`` (not in ``known_instruments``, when given), ``unparseable``
    (a naive time, which cannot be placed in UTC), ``bad_price`` (the price, or a bid or ask
    that is given, not a finite positive Decimal), ``bad_size`` (not an int, negative, or above
    ``MAX_TICK_SIZE``), ``time_backwards`` (earlier than ``last_time``; an equal time is fine:
    several prints share a millisecond).
    """
    if known_instruments is not None and tick.instrument not in known_instruments:
        return UNKNOWN_INSTRUMENT
    t = tick.time
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        return UNPARSEABLE
    bid, ask = tick.bid, tick.ask
    if (
        not _positive(tick.price)
        or (bid is not None and not _positive(bid))
        or (ask is not None and not _positive(ask))
    ):
        return BAD_PRICE
    size = tick.size
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TICK_SIZE:
        return BAD_SIZE
    if last_time is not None and t < last_time:
        return TIME_BACKWARDS
    return None


def _positive(price: object) -> bool:
    return isinstance(price, Decimal) and price.is_finite() and price > 0


def tick_fields(tick: Tick) -> dict[str, str]:
    """The flat text fields of ``tick`` (e.g. one stream entry); ``parse_tick_fields`` inverts it.

    ``time`` is ISO 8601 in UTC; prices are the Decimal text; absent bid/ask are left out.
    """
    fields = {
        "instrument": tick.instrument,
        "time": tick.time.astimezone(UTC).isoformat(),
        "price": str(tick.price),
        "size": str(tick.size),
    }
    if tick.bid is not None:
        fields["bid"] = str(tick.bid)
    if tick.ask is not None:
        fields["ask"] = str(tick.ask)
    return fields


def parse_tick_fields(row: Mapping[Any, Any]) -> Tick:
    """A ``Tick`` from flat text fields (str or bytes keys and values).

    Fields: ``instrument``, ``time`` (ISO 8601 with a UTC offset), ``price``, ``size``, and
    optional ``bid`` / ``ask``. Any missing or malformed field raises ``BadTick("unparseable")``;
    values that parse but are unusable (NaN, a negative size, ...) are left to ``validate_tick``.
    """
    try:
        instrument = _text(row, "instrument")
        time_text = _text(row, "time")
        t = datetime.fromisoformat(time_text)
        if t.tzinfo is None or t.utcoffset() is None:
            raise BadTick(UNPARSEABLE, f"naive time {time_text!r}")
        price = Decimal(_text(row, "price"))
        size = int(_text(row, "size"))
        bid_text = _optional_text(row, "bid")
        ask_text = _optional_text(row, "ask")
        bid = Decimal(bid_text) if bid_text else None
        ask = Decimal(ask_text) if ask_text else None
    except BadTick:
        raise
    except (KeyError, ValueError, TypeError, InvalidOperation, UnicodeDecodeError) as exc:
        raise BadTick(UNPARSEABLE, f"{type(exc).__name__}: {exc}") from None
    if not instrument:
        raise BadTick(UNPARSEABLE, "empty instrument")
    return Tick(
        instrument=instrument, time=t.astimezone(UTC), price=price, size=size, bid=bid, ask=ask
    )


def _optional_text(row: Mapping[Any, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None:
        value = row.get(name.encode())
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(row: Mapping[Any, Any], name: str) -> str:
    value = _optional_text(row, name)
    if value is None:
        raise KeyError(f"missing field {name!r}")
    return value
