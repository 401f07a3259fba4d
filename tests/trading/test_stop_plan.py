"""The protective stop's plan (``trading.stops.plan_stop``) on plain rows: no Redis, no SQL.

``workers.stops.sync.sync_stop`` acts on the plan; here only what it plans: the stop the
position needs, which open stop row already is it, which go, and as of when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trading.market import epoch_ms
from trading.orders import Order, OrderStatus
from trading.stops import WantedStop, cancel_as_of, exit_pending, plan_stop

T0 = datetime(2013, 10, 7, 13, 30, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Held:
    contract: str = "ESZ13"
    quantity: int = 0
    stop_price: Decimal | None = None
    opened_at: datetime | None = T0


@dataclass(frozen=True, slots=True)
class Row:
    """An open stop order row (``trading.stops.StopRowView``)."""

    client_order_id: str
    side: str = "sell"
    quantity: int = 1
    stop_price: Decimal | None = Decimal(97)
    contract: str = "ESZ13"
    status: OrderStatus = "working"
    decided_at: datetime | None = T0


def test_a_flat_position_wants_no_stop_and_cancels_every_open_one() -> None:
    rows = [Row("a"), Row("b")]
    for position in (None, Held(quantity=0, stop_price=Decimal(97))):
        plan = plan_stop(position, rows)
        assert (plan.wanted, plan.keep, plan.cancel) == (None, None, tuple(rows))


def test_a_long_wants_a_sell_stop_and_keeps_the_newest_row_that_is_it() -> None:
    rows = [Row("old", stop_price=Decimal(95)), Row("new", quantity=2)]
    plan = plan_stop(Held(quantity=2, stop_price=Decimal(97)), rows)

    assert plan.wanted == WantedStop("ESZ13", "sell", 2, Decimal(97))
    assert plan.keep is rows[1]
    assert plan.cancel == (rows[0],)


def test_a_short_wants_a_buy_stop() -> None:
    plan = plan_stop(Held(quantity=-3, stop_price=Decimal(105)), [])
    assert plan.wanted == WantedStop("ESZ13", "buy", 3, Decimal(105))
    assert plan.keep is None and plan.cancel == ()


def test_a_changed_quantity_or_price_needs_a_new_stop_and_cancels_the_old() -> None:
    rows = [Row("a", quantity=1)]
    for position in (
        Held(quantity=2, stop_price=Decimal(97)),
        Held(quantity=1, stop_price=Decimal("97.25")),
    ):
        plan = plan_stop(position, rows)
        assert plan.wanted is not None and plan.keep is None
        assert plan.cancel == tuple(rows)


def test_only_the_newest_row_can_be_kept() -> None:
    rows = [Row("match"), Row("newer", stop_price=Decimal(96))]
    plan = plan_stop(Held(quantity=1, stop_price=Decimal(97)), rows)
    assert plan.keep is None and plan.cancel == tuple(rows)


def test_a_position_without_a_stop_price_inherits_the_open_stop_resized() -> None:
    rows = [Row("a", quantity=1, stop_price=Decimal(97))]
    plan = plan_stop(Held(quantity=2), rows)

    assert plan.wanted == WantedStop("ESZ13", "sell", 2, Decimal(97))
    assert plan.keep is None and plan.cancel == tuple(rows)
    same = plan_stop(Held(quantity=1), rows)
    assert same.keep is rows[0] and same.cancel == ()


def test_no_stop_is_inherited_from_the_wrong_side_or_contract() -> None:
    for row in (Row("a", side="buy"), Row("b", contract="ESH14")):
        plan = plan_stop(Held(quantity=1), [row])
        assert plan.wanted is None and plan.cancel == (row,)


def test_stops_are_cancelled_as_of_the_fill_else_just_after_the_last_tick() -> None:
    fill = T0 + timedelta(minutes=5)
    last = T0 + timedelta(minutes=3)
    assert cancel_as_of(fill, epoch_ms(last), None) == fill
    assert cancel_as_of(None, epoch_ms(last), None) == last + timedelta(milliseconds=1)
    assert cancel_as_of(None, None, None) is None


def test_older_stops_are_never_worked_past_the_decision_of_the_one_kept() -> None:
    kept = Row("k", decided_at=T0 + timedelta(minutes=1))
    fill = T0 + timedelta(minutes=5)
    assert cancel_as_of(fill, None, kept) == kept.decided_at
    assert cancel_as_of(None, None, kept) == kept.decided_at
    early = T0 - timedelta(minutes=1)
    assert cancel_as_of(early, None, kept) == early
    assert cancel_as_of(fill, None, Row("x", decided_at=None)) == fill


def order(intent: str, status: OrderStatus) -> Order:
    kind = "exit" if intent == "exit" else "entry"
    return Order("c", "ESZ13", "sell", 1, "market", kind, T0, status=status)


def test_stops_are_left_alone_while_an_exit_of_the_session_is_open() -> None:
    assert exit_pending({"c": order("exit", "sent")})
    assert exit_pending({"c": order("exit", "partially_filled")})
    assert not exit_pending({"c": order("exit", "filled")})
    assert not exit_pending({"c": order("entry", "working")})
    assert not exit_pending({})
