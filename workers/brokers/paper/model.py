"""The paper broker's pure parts: its config, fill rules, position arithmetic, and the codec
of its stored rows (``workers.brokers.paper.broker`` does the I/O).

Prices come read-only from the market-data streams (``md:{<instrument>}:ticks``). The market
is the data's, never the wall clock's: an order can only fill on a tick whose data time ``t``
is at or after its ``decided_at``; with no such tick yet it rests. Each order scans from its
own stream cursor, so matching costs work proportional to new ticks. Fill rules (full fills):

- market: the first eligible tick; buy at its ask, sell at its bid when present, else at
  the trade price; plus ``slippage_ticks`` against the trader.
- limit: buy when a trade prints at or below the limit, sell at or above; fills AT the limit
  (no slippage, no price improvement).
- stop: buy triggers on a trade at or above the stop, sell at or below; fills at the stop,
  or at the trade price when the market gapped through it (the worse price), plus slippage.
- ``ioc``: a limit/stop order not filled by the first eligible tick is cancelled. ``day`` and
  ``gtc`` are recorded but rest until filled or cancelled (no session calendar here).

A tick whose data time went back (``t`` below its entry id's ms) or that cannot be parsed is
skipped. A fill is one WATCH/MULTI transaction on the order and the account: position, average
price, realized P&L (average-price method, times the contract multiplier), cash (+ realized
- commission) and the fills stream change together, exactly once (execution id
``<broker order id>-1``), however many ``match`` calls race.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from trading.candles import validate_tick
from trading.contracts import ContractSpec
from trading.exceptions import BadInput
from trading.market import Tick
from workers.brokers.commands import BrokerOrder, Fill

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class PaperConfig:
    """How the paper broker charges and fills. ``batch``: stream entries read per round trip."""

    commission_per_contract: Decimal = Decimal("2.50")
    slippage_ticks: int = 0
    starting_cash: Decimal = Decimal("100000")
    batch: int = 1000

    def __post_init__(self) -> None:
        for name in ("commission_per_contract", "starting_cash"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise BadInput(f"paper broker {name} must be a Decimal >= 0, got {value!r}")
        for name, low in (("slippage_ticks", 0), ("batch", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise BadInput(f"paper broker {name} must be an int >= {low}, got {value!r}")


def market_stream_key(instrument: str) -> str:
    """The market-data stream of one instrument (streams.md)."""
    return f"md:{{{instrument}}}:ticks"


def epoch_ms_ceil(value: datetime) -> int:
    """The first whole millisecond at or after ``value`` (so ``t >= ms`` means ``t >= value``)."""
    return -((EPOCH - value) // MS)


def position_after(
    quantity: int, average: Decimal | None, fill_qty: int, price: Decimal, multiplier: Decimal
) -> tuple[int, Decimal | None, Decimal]:
    """New (signed quantity, average price, realized P&L) after a fill of ``fill_qty``."""
    new_qty = quantity + fill_qty
    if quantity == 0 or (quantity > 0) == (fill_qty > 0):
        total = abs(quantity) * (average or ZERO) + abs(fill_qty) * price
        return new_qty, total / abs(new_qty), ZERO
    closed = min(abs(quantity), abs(fill_qty))
    direction = 1 if quantity > 0 else -1
    realized = (price - (average or price)) * closed * direction * multiplier
    if new_qty == 0:
        return 0, None, realized
    if (new_qty > 0) == (quantity > 0):
        return new_qty, average, realized
    return new_qty, price, realized


def fill_price(
    order: dict[str, str], tick: Tick, spec: ContractSpec, slippage: int
) -> Decimal | None:
    """The price ``order`` fills at on ``tick``, or ``None`` if this tick does not fill it."""
    buy = order["side"] == "buy"
    slip = spec.tick_size * slippage * (1 if buy else -1)
    kind = order["order_type"]
    if kind == "market":
        touch = tick.ask if buy else tick.bid
        return (touch if touch is not None else tick.price) + slip
    if kind == "limit":
        limit = Decimal(order["limit_price"])
        touched = tick.price <= limit if buy else tick.price >= limit
        return limit if touched else None
    stop = Decimal(order["stop_price"])
    if buy and tick.price >= stop:
        return max(stop, tick.price) + slip
    if not buy and tick.price <= stop:
        return min(stop, tick.price) + slip
    return None


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def strings(raw: Any) -> dict[str, str]:
    return {text(k): text(v) for k, v in dict(raw).items()}


def decimal_or_none(value: str) -> Decimal | None:
    return Decimal(value) if value else None


def eligible_tick(
    instrument: str, entry_id: str, fields: dict[str, str], decided_ms: int
) -> Tick | None:
    """The stream entry as a tick eligible for an order decided at ``decided_ms``, else None.

    A tick the sessions reject (``trading.candles.validate_tick``: a bad price, bid, ask or
    size) fills nothing either, nor one earlier than its stream id (the publisher gave a tick
    whose time went backwards the time of the entry before it)."""
    try:
        t_ms = int(fields["t"])
        price = Decimal(fields["p"])
        bid = decimal_or_none(fields.get("b", ""))
        ask = decimal_or_none(fields.get("a", ""))
        size = int(fields.get("s", "0"))
        tick = Tick(instrument, EPOCH + t_ms * MS, price, size, bid, ask)
    except (KeyError, ValueError, InvalidOperation, OverflowError):
        return None
    if t_ms < decided_ms or t_ms < int(entry_id.split("-", 1)[0]):
        return None
    return tick if validate_tick(tick, None) is None else None


def order_from_fields(row: dict[str, str]) -> BrokerOrder:
    return BrokerOrder(
        client_order_id=row["client_order_id"],
        broker_order_id=row["broker_order_id"],
        session_id=row["session_id"],
        contract=row["contract"],
        side=row["side"],  # type: ignore[arg-type]
        quantity=int(row["quantity"]),
        filled_quantity=int(row["filled_quantity"]),
        order_type=row["order_type"],  # type: ignore[arg-type]
        limit_price=decimal_or_none(row["limit_price"]),
        stop_price=decimal_or_none(row["stop_price"]),
        status=row["status"],  # type: ignore[arg-type]
        decided_at=datetime.fromisoformat(row["decided_at"]),
        time_in_force=row["time_in_force"],  # type: ignore[arg-type]
        average_fill_price=decimal_or_none(row["average_fill_price"]),
    )


def fill_from_fields(row: dict[str, str]) -> Fill:
    return Fill(
        execution_id=row["execution_id"],
        client_order_id=row["client_order_id"],
        broker_order_id=row["broker_order_id"],
        account=row["account"],
        session_id=row["session_id"],
        contract=row["contract"],
        quantity=int(row["quantity"]),
        price=Decimal(row["price"]),
        commission=Decimal(row["commission"]),
        time=datetime.fromisoformat(row["time"]),
    )


def stream_id(entry_id: str) -> tuple[int, int]:
    """A stream id ``<ms>-<seq>`` as numbers, in stream order."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def tick_ms(entry_id: str, fields: dict[str, str]) -> int:
    """A stream entry's data time (its id's when the entry has no readable ``t``)."""
    try:
        return int(fields["t"])
    except (KeyError, ValueError):
        return stream_id(entry_id)[0]


@dataclass(frozen=True, slots=True)
class MarketBound:
    """The market as of a point in data time: the ticks before ``until_ms`` and, if given,
    only the stream entries up to ``through_id`` (what a session has processed)."""

    until_ms: int | None = None
    through_id: str | None = None

    def cut(self, entries: list[tuple[str, dict[str, str]]]) -> list[tuple[str, dict[str, str]]]:
        """The leading ``entries`` within the bound."""
        last = None if self.through_id is None else stream_id(self.through_id)
        for index, (entry_id, fields) in enumerate(entries):
            late = self.until_ms is not None and tick_ms(entry_id, fields) >= self.until_ms
            if late or (last is not None and stream_id(entry_id) > last):
                return entries[:index]
        return entries
