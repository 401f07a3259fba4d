"""The session's own view of its protective stop, kept in data time by the tick step.

A protective stop rests at the broker (``workers.stops.sync``), and the broker fills it when a
price reaches it. The session learns of that fill through a task, at a wall-clock moment that
depends on how fast workers run; a strategy deciding on the session's next candles must not
depend on that moment. So the step watches the ticks itself: when a tick reaches the stop the
session expects to rest (the broker's own rule, ``workers.brokers.paper.model.fill_price``: a
sell stop at a trade at or below it, a buy stop at or above), the position it protects is
taken as closed (a ``StopOut`` in ``_progress``, one per touched stop) until that stop's fill
is applied (``workers.orders.fills`` settles it). The strategy sees ``held + pending + taken as
closed``, the same whenever the fill arrives.

The stop the session expects is derived from its state, never stored twice. With orders of
its own open, the newest decision rules: an entry carrying a stop (the entry leg of a reversal
included) expects that stop (it rests from the entry's fill, the first tick at or after its
decision) unless it was touched already; anything else (an exit, a roll's order, an entry
without a stop) expects none (an exit cancels the stop as of its decision). Otherwise the
open position's stop, unless it was touched already (its fill is awaited). A strategy that
moves its stop moves the one of these that rules (``trading.decision``).

``watch`` is the watch itself over a run of ticks; the tick step (``workers.ticks.step``) runs
it on the ticks between candles and ``trading.decision`` on those up to each closed candle.

The stop the broker must hold for the session's position is planned here too (``plan_stop``:
which stop is wanted, which open stop row already is it, which rows go), and acted on by
``workers.stops.sync.sync_stop``, which reads the rows and talks to the broker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Generic, Protocol, TypeVar

from trading.events import Event
from trading.intents import Side, client_order_id
from trading.market import EPOCH, Tick, epoch_ms
from trading.orders import OPEN_STATUSES, OrderStatus, OrderView, PositionView


@dataclass(frozen=True, slots=True)
class ExpectedStop:
    """The stop the session expects at the broker: it protects a long (``direction`` 1, a
    sell stop) or a short (-1, a buy stop) at ``price``."""

    direction: int
    price: Decimal

    def touched_by(self, price: Decimal) -> bool:
        return price <= self.price if self.direction > 0 else price >= self.price


def pending_quantity(orders: Mapping[str, OrderView]) -> int:
    """The signed quantity still to fill on the session's open orders."""
    total = 0
    for order in orders.values():
        if order.status in OPEN_STATUSES:
            remaining = order.quantity - order.filled_quantity
            total += remaining if order.side == "buy" else -remaining
    return total


def attached_stop_id(entry_client_order_id: str) -> str:
    """The id of the protective stop attached to an entry ``<hex>-<seq>-<leg>``."""
    prefix, seq, leg = entry_client_order_id.rsplit("-", 2)
    return f"{prefix}-stop-{seq}-{leg}"


_ATTACHED = re.compile(r"([0-9a-f]{16})-stop-([0-9]+)-([0-9]+)")


def attached_entry_id(stop_client_order_id: str) -> str | None:
    """The entry a protective stop ``<hex>-stop-<seq>-<leg>`` is attached to (the inverse of
    ``attached_stop_id``), or None for any other id."""
    found = _ATTACHED.fullmatch(stop_client_order_id)
    return None if found is None else f"{found.group(1)}-{found.group(2)}-{found.group(3)}"


def move_stop_id(session_id: str, seq: int) -> str:
    """The id of the stop order that moves the session's stop, decided as signal ``seq``."""
    prefix = client_order_id(session_id, seq, 0).split("-", 1)[0]
    return f"{prefix}-move-{seq}"


@dataclass(frozen=True, slots=True)
class StopOut:
    """A stop the step saw touched, its fill not applied yet: the stop (``direction``,
    ``price``), the signed ``quantity`` taken as closed, and when (``at_ms``, data time)."""

    direction: int
    price: Decimal
    quantity: int
    at_ms: int

    def to_json(self) -> list[object]:
        return [self.direction, str(self.price), self.quantity, self.at_ms]

    @classmethod
    def from_json(cls, raw: Sequence[object]) -> StopOut:
        direction, price, quantity, at_ms = raw
        return cls(int(str(direction)), Decimal(str(price)), int(str(quantity)), int(str(at_ms)))

    def covers(self, direction: int, price: Decimal, since: datetime | None) -> bool:
        """Whether this is the touch of that stop (decided or opened at ``since``)."""
        after = since is None or self.at_ms >= _ms(since)
        return (self.direction, self.price) == (direction, price) and after


def taken_as_closed(stops_out: Sequence[StopOut]) -> int:
    """The signed quantity the session takes as closed by touched stops."""
    return sum(out.quantity for out in stops_out)


def expected_stop(
    position: PositionView | None,
    orders: Mapping[str, OrderView],
    stops_out: Sequence[StopOut] = (),
) -> ExpectedStop | None:
    """The stop the session expects to rest at the broker now (see the module), or None:
    never one it already saw touched."""
    pending = [o for o in orders.values() if o.status in OPEN_STATUSES]
    if pending:
        newest = max(pending, key=lambda o: (o.created_at, o.intent == "entry"))
        if newest.intent != "entry" or newest.stop_price is None:
            return None
        stop = ExpectedStop(1 if newest.side == "buy" else -1, newest.stop_price)
        since: datetime | None = newest.created_at
    elif position is None or position.quantity == 0 or position.stop_price is None:
        return None
    else:
        stop = ExpectedStop(1 if position.quantity > 0 else -1, position.stop_price)
        since = position.opened_at
    if any(out.covers(stop.direction, stop.price, since) for out in stops_out):
        return None
    return stop


def first_touch(stop: ExpectedStop, ticks: Sequence[Tick]) -> Tick | None:
    """The first of ``ticks`` that reaches ``stop``."""
    for tick in ticks:
        if stop.touched_by(tick.price):
            return tick
    return None


def watch(
    position: PositionView | None,
    orders: Mapping[str, OrderView],
    stops_out: Sequence[StopOut],
    ticks: Sequence[Tick],
) -> tuple[StopOut, Event] | None:
    """The first of ``ticks`` that reaches the stop the session expects takes the position it
    protects as closed: that ``StopOut`` and its event; None when no tick reaches it (or the
    session would take nothing as closed)."""
    stop = expected_stop(position, orders, stops_out)
    tick = None if stop is None else first_touch(stop, ticks)
    if stop is None or tick is None:
        return None
    held = 0 if position is None else position.quantity
    closed = held + pending_quantity(orders) + taken_as_closed(stops_out)
    if closed == 0:
        return None
    out = StopOut(stop.direction, stop.price, -closed, epoch_ms(tick.time))
    message = (
        f"protective stop {stop.price} touched at {tick.price}: position {closed} taken "
        "as closed until the stop's fill arrives"
    )
    return out, Event("risk", "info", message, {"at": tick.time.isoformat(), "closed": closed})


def after_stop_fill(
    stops_out: Sequence[StopOut], fill_quantity: int, stop_price: Decimal | None
) -> tuple[StopOut, ...]:
    """``stops_out`` once a protective stop's fill is applied: the touch of that stop (a buy
    fill closes a short: direction -1) is settled, the oldest first; a fill the step did not
    see coming settles nothing."""
    direction = -1 if fill_quantity > 0 else 1
    for index, out in enumerate(stops_out):
        if stop_price is not None and (out.direction, out.price) == (direction, stop_price):
            return (*stops_out[:index], *stops_out[index + 1 :])
    return tuple(stops_out)


# --------------------------------------------------------------------------- the stop to hold


class StopRowView(Protocol):
    """What the plan reads of one open protective stop order row (``models.tables.OrderRow``)."""

    @property
    def client_order_id(self) -> str: ...

    @property
    def contract(self) -> str: ...

    @property
    def side(self) -> Side: ...

    @property
    def quantity(self) -> int: ...

    @property
    def stop_price(self) -> Decimal | None: ...

    @property
    def status(self) -> OrderStatus: ...

    @property
    def decided_at(self) -> datetime | None: ...


Row = TypeVar("Row", bound=StopRowView)


@dataclass(frozen=True, slots=True)
class WantedStop:
    """The stop order a position needs."""

    contract: str
    side: Side
    quantity: int
    stop_price: Decimal


@dataclass(frozen=True, slots=True)
class StopPlan(Generic[Row]):
    """The stop the broker must hold (``wanted``, None: none), the open stop row that already
    is that stop (``keep``, None: a new one is needed) and the open stop rows to cancel."""

    wanted: WantedStop | None
    keep: Row | None
    cancel: tuple[Row, ...]


def wanted_stop(position: PositionView | None) -> WantedStop | None:
    """The stop ``position`` needs, or None (flat, or opened without a stop)."""
    if position is None or position.quantity == 0 or position.stop_price is None:
        return None
    side: Side = "sell" if position.quantity > 0 else "buy"
    return WantedStop(position.contract, side, abs(position.quantity), position.stop_price)


def inherited_stop(position: PositionView | None, rows: Sequence[StopRowView]) -> WantedStop | None:
    """An open position without a stop price (its state was rebuilt or corrected) keeps the
    price of the stop still open for it (the newest of ``rows``), resized: a position is never
    unprotected silently."""
    if position is None or position.quantity == 0 or not rows or rows[-1].stop_price is None:
        return None
    side: Side = "sell" if position.quantity > 0 else "buy"
    if (rows[-1].contract, rows[-1].side) != (position.contract, side):
        return None
    return WantedStop(position.contract, side, abs(position.quantity), rows[-1].stop_price)


def is_wanted(row: StopRowView, wanted: WantedStop) -> bool:
    """Whether the stop order of ``row`` is the ``wanted`` stop."""
    return (
        row.contract == wanted.contract
        and row.side == wanted.side
        and row.quantity == wanted.quantity
        and row.stop_price is not None
        and row.stop_price == wanted.stop_price
    )


def plan_stop(position: PositionView | None, rows: Sequence[Row]) -> StopPlan[Row]:
    """What the broker must hold for ``position`` given the session's open stop ``rows``
    (oldest first): the newest row is kept when it is the wanted stop, every other is
    cancelled."""
    wanted = wanted_stop(position) or inherited_stop(position, rows)
    keep = rows[-1] if rows and wanted is not None and is_wanted(rows[-1], wanted) else None
    return StopPlan(wanted, keep, tuple(row for row in rows if row is not keep))


def cancel_as_of(
    as_of: datetime | None, last_ms: int | None, keep: StopRowView | None
) -> datetime | None:
    """The data time older stops are cancelled as of: ``as_of`` (the fill that changed the
    position), else just after the session's last processed tick (``last_ms``); never past
    the decision of the stop kept, so two stops never rest at once."""
    horizon = as_of
    if horizon is None and last_ms is not None:
        horizon = EPOCH + (last_ms + 1) * timedelta(milliseconds=1)
    if keep is not None and keep.decided_at is not None:
        horizon = keep.decided_at if horizon is None else min(horizon, keep.decided_at)
    return horizon


def exit_pending(orders: Mapping[str, OrderView]) -> bool:
    """Whether the session has an exit order of its own still open: while it is, its stops
    are left alone (the exit cancels them as of its decision before it is sent; a stop placed
    meanwhile could fill after the exit and reverse the position)."""
    return any(o.intent == "exit" and o.status in OPEN_STATUSES for o in orders.values())


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)
