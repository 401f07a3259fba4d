"""The pure pieces of a session's recovery: no Redis, no SQL, no broker, no clock.

``workers.recovery.recover`` reads what a lost session left (SQL rows, the broker's answers,
the instrument's stream), plans with these, builds the state (``workers.recovery.rebuild``)
and writes it:

- ``signal_seq_after``: the sequence a rebuilt session continues from, past every client order
  id it ever used (``<hash>-<seq>-<leg>``, ``trading.intents.client_order_id``), so no client
  order id is ever reused for a different order.
- ``history_window`` / ``rewarm``: which stream entries to fold, and the candles they make,
  without running the strategy.
- ``rebuilt_position``: the position the session holds again (the broker's, or its own fills'
  share of an account and contract it shares), with the stop price it keeps
  (``stop_price_for``: its protective stop still open).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from trading.candles import UNPARSEABLE, fold_ticks, validate_tick
from trading.intents import Side, client_order_id
from trading.market import Candle, StreamEntry, Tick, entry_to_tick, epoch_ms
from trading.timeframes import Timeframe

_COID = re.compile(r"^([0-9a-f]{16})-(?:(\d+)-\d+|move-(\d+))$")
"""A signal's order ``<hex>-<seq>-<leg>``, or its stop move ``<hex>-move-<seq>``."""


# --------------------------------------------------------------------------- signal sequence


def max_signal_seq(session_id: str, client_order_ids: Iterable[str]) -> int:
    """The highest signal sequence among ``client_order_ids`` that belong to ``session_id``
    (other ids, e.g. adopted external orders, are ignored); 0 when there is none."""
    prefix = client_order_id(session_id, 0, 0).split("-", 1)[0]
    highest = 0
    for coid in client_order_ids:
        match = _COID.match(coid)
        if match is not None and match.group(1) == prefix:
            highest = max(highest, int(match.group(2) or match.group(3)))
    return highest


def decided_after(session_id: str, client_order_ids: Iterable[str], seq: int) -> frozenset[str]:
    """The ids among ``client_order_ids`` of ``session_id``'s signals numbered past ``seq``
    (orders and stop moves; an entry's attached stop follows its entry): those decided after
    a snapshot taken at that signal sequence."""
    prefix = client_order_id(session_id, 0, 0).split("-", 1)[0]
    later: set[str] = set()
    for coid in client_order_ids:
        match = _COID.match(coid)
        if (
            match is not None
            and match.group(1) == prefix
            and int(match.group(2) or match.group(3)) > seq
        ):
            later.add(coid)
    return frozenset(later)


def signal_seq_after(session_id: str, client_order_ids: Iterable[str], snapshot_seq: int) -> int:
    """The signal sequence to continue from: the next signal uses this value + 1."""
    return max(snapshot_seq, max_signal_seq(session_id, client_order_ids))


# --------------------------------------------------------------------------- candles


def entry_id(raw: bytes | str) -> tuple[int, int]:
    """A stream id ``<ms>-<seq>`` as a comparable pair."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _bucket(values: Mapping[bytes, bytes], seconds: int) -> int | None:
    try:
        return int(values[b"t"]) // (seconds * 1000)
    except (KeyError, ValueError):
        return None


def history_window(
    newest_first: Sequence[StreamEntry],
    timeframe: Timeframe,
    need: int,
    since: str | None,
    max_candles: int,
    at_stream_start: bool,
) -> tuple[bool, list[StreamEntry]]:
    """Whether ``newest_first`` (entries read back from the stream's end) reaches far enough,
    and the entries to fold, oldest first, cut at a candle boundary.

    Far enough: the newest (partial) candle and ``need`` whole ones before it, and every candle
    back to the one holding ``since`` (the snapshot's cursor), at most ``max_candles`` + 1. The
    oldest candle read is whole only at the stream's start (else it may be only its end), so
    it counts only there. At the stream's start, whatever there is is enough.
    """
    order: list[int] = []
    seen: set[int] = set()
    since_bucket: int | None = None
    since_id = None if since is None else entry_id(since)
    for raw_id, values in newest_first:
        bucket = _bucket(values, timeframe.seconds)
        if bucket is None:
            continue
        if bucket not in seen:
            seen.add(bucket)
            order.append(bucket)
        if since_id is not None and since_bucket is None and entry_id(raw_id) <= since_id:
            since_bucket = bucket
    if since_id is None:
        back_to_since = 0
    elif since_bucket is None:
        back_to_since = max_candles + 1
    else:
        back_to_since = order.index(since_bucket) + 1
    wanted = min(max(need + 1, back_to_since), max_candles + 1)
    usable = len(order) if at_stream_start else len(order) - 1
    if usable < wanted and not at_stream_start:
        return False, []
    wanted = min(wanted, usable)
    cut = len(newest_first)
    if wanted < len(order):
        first_dropped = order[wanted]
        cut = next(
            i
            for i, (_, values) in enumerate(newest_first)
            if _bucket(values, timeframe.seconds) == first_dropped
        )
    return True, list(reversed(newest_first[:cut]))


@dataclass(frozen=True, slots=True)
class Rewarmed:
    """Candles folded from the stream (the strategy did not run on them)."""

    closed: tuple[Candle, ...] = ()
    partial: Candle | None = None
    last_ms: int | None = None
    ticks: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def closed_after(self, last_ms: int | None, timeframe: Timeframe) -> int:
        """How many closed candles were still open (or not begun) at ``last_ms``."""
        if last_ms is None:
            return len(self.closed)
        step_ms = timeframe.seconds * 1000
        return sum(1 for c in self.closed if epoch_ms(c.start) + step_ms > last_ms)


def rewarm(instrument: str, entries: Sequence[StreamEntry], timeframe: Timeframe) -> Rewarmed:
    """Validate and fold ``entries`` (oldest first) into candles, as the tick path would."""
    good: list[Tick] = []
    rejected: dict[str, int] = {}
    last_time: datetime | None = None
    for _entry, values in entries:
        tick = entry_to_tick(instrument, values)
        reason = UNPARSEABLE if tick is None else validate_tick(tick, last_time)
        if reason is not None:
            rejected[reason] = rejected.get(reason, 0) + 1
            continue
        assert tick is not None
        good.append(tick)
        last_time = tick.time
    folded = fold_ticks(None, good, timeframe)
    return Rewarmed(
        closed=folded.closed,
        partial=folded.partial,
        last_ms=None if last_time is None else epoch_ms(last_time),
        ticks=len(good),
        rejected=rejected,
    )


# --------------------------------------------------------------------------- the position


@dataclass(frozen=True, slots=True)
class Position:
    quantity: int
    average_price: Decimal | None
    opened_at: datetime | None = None
    stop_price: Decimal | None = None
    """The price of the protective stop still working for it (``stop_price_for``)."""


@dataclass(frozen=True, slots=True)
class OpenStop:
    """A protective stop order row of the session that is not final."""

    client_order_id: str
    contract: str
    side: Side
    stop_price: Decimal


def stop_price_for(quantity: int, contract: str, stops: Sequence[OpenStop]) -> Decimal | None:
    """The stop price of a rebuilt position: the newest open stop's (``stops`` oldest first),
    when it is on the side that closes ``quantity`` in ``contract``; None when flat or no stop
    protects it. The rebuilt session then watches the stop that rests for it
    (``trading.stops``) and syncs it like any other (``workers.stops.sync``)."""
    if quantity == 0 or not stops:
        return None
    newest = stops[-1]
    closing: Side = "sell" if quantity > 0 else "buy"
    if (newest.contract, newest.side) != (contract, closing):
        return None
    return newest.stop_price


def rebuilt_position(
    contract: str,
    broker: tuple[int, Decimal | None],
    fills: tuple[int, Decimal | None],
    sole: bool,
    last_fill: datetime | None,
    last_price: Decimal | None,
    stops: Sequence[OpenStop],
) -> Position:
    """The position a rebuilt session holds in ``contract``: the ``broker``'s (quantity and
    average price) when the session is alone on its account and contract (``sole``), else the
    share its own ``fills`` make (quantity and average). A position without an average price is
    valued at ``last_price``; it was opened at the session's ``last_fill`` and keeps the stop
    price of its open protective stop (``stop_price_for``)."""
    quantity, average = broker if sole else (fills[0], None)
    if average is None and fills[0] == quantity:
        average = fills[1]
    if average is None and quantity and last_price is not None:
        average = last_price
    opened = last_fill if quantity else None
    return Position(quantity, average, opened, stop_price_for(quantity, contract, stops))


__all__ = [
    "OpenStop",
    "Position",
    "Rewarmed",
    "entry_id",
    "history_window",
    "max_signal_seq",
    "rebuilt_position",
    "rewarm",
    "signal_seq_after",
    "stop_price_for",
]
