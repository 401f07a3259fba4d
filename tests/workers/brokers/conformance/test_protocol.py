"""One conformance suite for every broker adapter: the protocol calls as the fleet makes them.

Each test runs over every venue of ``venues.py``. A broker may differ in HOW it gets there (the
paper broker works resting orders when asked, a live broker by itself), never in what the fleet
sees: the same fills, positions, money and failures.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.kit.wait import wait_until
from tests.workers.brokers.conformance.venues import (
    COMMISSION,
    STARTING_CASH,
    PaperVenue,
    TradovateVenue,
    Venue,
    at,
)
from trading.exceptions import ServiceUnavailable
from trading.intents import client_order_id
from trading.stops import attached_stop_id
from workers.brokers import (
    FILLS_START,
    CancelOrder,
    Fill,
    PlaceOrder,
    QueryBalance,
    QueryOpenOrders,
    QueryOrder,
    QueryPositions,
)
from workers.brokers.base import StopModifier

pytestmark = pytest.mark.integration

SESSION = "conf-sess-1"


@pytest.fixture(params=["paper", "tradovate"])
def venue(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[Venue]:
    made: Venue = (
        PaperVenue(redis_url) if request.param == "paper" else TradovateVenue(redis_url, tmp_path)
    )
    yield made
    made.close()


def order(
    venue: Venue, coid: str, side: str = "buy", quantity: int = 1, kind: str = "market", **kw
) -> PlaceOrder:
    return PlaceOrder(
        account=venue.account, session_id=SESSION, client_order_id=coid, contract="ESZ13",
        side=side, quantity=quantity, order_type=kind, decided_at=kw.pop("decided_at", at(0)),
        **kw,
    )  # type: ignore[arg-type]  # fmt: skip


def stop(venue: Venue, coid: str, price: str, side: str = "sell", **kw) -> PlaceOrder:
    return order(venue, coid, side, kind="stop", stop_price=Decimal(price), **kw)


def all_fills(venue: Venue) -> list[Fill]:
    fills: list[Fill] = []
    cursor = FILLS_START
    while True:
        batch, cursor = venue.broker.fills_since(venue.account, cursor)
        if not batch:
            return fills
        fills.extend(batch)


def fills_of(venue: Venue, count: int) -> list[Fill]:
    """The account's fills once there are ``count`` of them (working resting orders meanwhile)."""

    def enough() -> list[Fill]:
        venue.work()
        fills = all_fills(venue)
        return fills if len(fills) >= count else []

    return wait_until(enough, timeout=10, what=f"{count} fills at {venue.name}")


def positions(venue: Venue) -> dict[str, int]:
    return venue.broker.positions(QueryPositions(venue.account))


def status(venue: Venue, coid: str) -> str:
    found = venue.broker.order(QueryOrder(venue.account, coid))
    return "unknown" if found is None else found.status


def test_a_market_order_fills_at_the_market(venue: Venue) -> None:
    venue.trade(at(1), "1800.00")
    ack = venue.broker.place_order(order(venue, "m1"))
    assert not ack.duplicate
    [fill] = fills_of(venue, 1)
    assert (fill.client_order_id, fill.session_id, fill.contract) == ("m1", SESSION, "ESZ13")
    assert (fill.quantity, fill.price, fill.commission) == (1, Decimal("1800.00"), COMMISSION)
    assert fill.time == at(1)
    assert fill.broker_order_id == ack.broker_order_id
    assert status(venue, "m1") == "filled"
    assert positions(venue) == {"ESZ13": 1}


def test_the_same_client_order_id_again_creates_nothing(venue: Venue) -> None:
    venue.trade(at(1), "1800.00")
    first = venue.broker.place_order(order(venue, "d1"))
    again = venue.broker.place_order(order(venue, "d1"))
    assert (again.broker_order_id, again.duplicate) == (first.broker_order_id, True)
    fills_of(venue, 1)
    venue.trade(at(2), "1801.00")
    venue.work()
    assert len(all_fills(venue)) == 1
    assert positions(venue) == {"ESZ13": 1}


def test_a_limit_order_rests_until_touched_and_fills_at_its_price(venue: Venue) -> None:
    venue.trade(at(1), "1800.00")
    ack = venue.broker.place_order(
        order(venue, "l1", kind="limit", limit_price=Decimal("1798.00"), decided_at=at(1.5))
    )
    assert ack.status == "working"
    venue.trade(at(2), "1799.00")
    venue.work()
    assert [
        o.client_order_id for o in venue.broker.open_orders(QueryOpenOrders(venue.account))
    ] == ["l1"]
    venue.trade(at(3), "1797.75")
    [fill] = fills_of(venue, 1)
    assert (fill.price, fill.time) == (Decimal("1798.00"), at(3))
    assert venue.broker.open_orders(QueryOpenOrders(venue.account)) == []


def test_a_cancelled_order_never_fills(venue: Venue) -> None:
    venue.trade(at(1), "1800.00")
    venue.broker.place_order(
        order(venue, "c1", kind="limit", limit_price=Decimal("1790.00"), decided_at=at(1.5))
    )
    assert venue.broker.cancel_order(CancelOrder(venue.account, "c1")).status == "cancelled"
    assert venue.broker.cancel_order(CancelOrder(venue.account, "c1")).status == "cancelled"
    venue.trade(at(2), "1789.00")
    venue.work()
    assert all_fills(venue) == []
    assert status(venue, "c1") == "cancelled"
    assert venue.broker.cancel_order(CancelOrder(venue.account, "nope")).status == "unknown"


def test_an_entry_sent_with_its_stop_is_protected_from_its_fill_on(venue: Venue) -> None:
    venue.trade(at(1), "1800.00")
    entry_id = client_order_id(SESSION, 1, 0)
    stop_id = attached_stop_id(entry_id)
    protective = stop(venue, stop_id, "1795.00", parent_client_order_id=entry_id)
    venue.broker.place_order(order(venue, entry_id, attached_stop=protective))
    fills_of(venue, 1)
    assert status(venue, stop_id) == "working"
    assert venue.broker.place_order(protective).duplicate
    venue.trade(at(2), "1796.00")
    venue.trade(at(3), "1794.50")
    entry, exit_ = fills_of(venue, 2)
    assert (entry.client_order_id, exit_.client_order_id) == (entry_id, stop_id)
    assert exit_.session_id == SESSION
    assert (exit_.quantity, exit_.price, exit_.time) == (-1, Decimal("1794.50"), at(3))
    assert positions(venue) == {}


def test_a_stop_attached_to_an_entry_that_never_fills_is_cancelled(venue: Venue) -> None:
    venue.trade(at(1), "1800.00")
    entry_id = client_order_id(SESSION, 2, 0)
    stop_id = attached_stop_id(entry_id)
    protective = stop(venue, stop_id, "1780.00", parent_client_order_id=entry_id)
    entry = order(
        venue, entry_id, kind="limit", limit_price=Decimal("1790.00"), attached_stop=protective
    )
    venue.broker.place_order(entry)
    venue.broker.cancel_order(CancelOrder(venue.account, entry_id))
    venue.trade(at(2), "1779.00")
    wait_until(lambda: venue.work() or status(venue, stop_id) == "cancelled", what="stop gone")
    assert all_fills(venue) == []


def test_a_round_trip_books_money_exactly(venue: Venue) -> None:
    venue.trade(at(1), "1800.00")
    venue.broker.place_order(order(venue, "r1", quantity=2))
    fills_of(venue, 1)
    venue.trade(at(2), "1801.25")
    venue.broker.place_order(order(venue, "r2", "sell", quantity=2, decided_at=at(1.5)))
    fills = fills_of(venue, 2)
    assert [f.quantity for f in fills] == [2, -2]
    assert positions(venue) == {}
    money = venue.broker.balance(QueryBalance(venue.account))
    assert money.realized_pnl == Decimal("125.00")  # 2 contracts x 1.25 points x 50
    assert money.commissions == 4 * COMMISSION
    assert money.cash == STARTING_CASH + Decimal("125.00") - 4 * COMMISSION


def test_the_fill_log_is_read_once_in_order_from_a_cursor(venue: Venue) -> None:
    venue.trade(at(1), "1800.00")
    for n in range(3):
        venue.broker.place_order(order(venue, f"f{n}", "buy" if n % 2 == 0 else "sell"))
    fills = fills_of(venue, 3)
    assert [f.client_order_id for f in fills] == ["f0", "f1", "f2"]
    assert len({f.execution_id for f in fills}) == 3
    first, cursor = venue.broker.fills_since(venue.account, FILLS_START)
    assert len(first) == 3 < venue.broker.fills_batch
    assert venue.broker.fills_since(venue.account, cursor) == ([], cursor), (
        "an answer short of a batch held every fill"
    )
    rest: list[Fill] = []
    while True:
        batch, after = venue.broker.fills_since(venue.account, cursor)
        if not batch:
            assert after == cursor
            break
        rest.extend(batch)
        cursor = after
    assert [f.execution_id for f in first + rest] == [f.execution_id for f in fills]


def test_a_broker_that_cannot_answer_never_answers_flat(venue: Venue) -> None:
    venue.trade(at(1), "1800.00")
    venue.broker.place_order(order(venue, "o1"))
    fills_of(venue, 1)
    with venue.outage():
        for query in (
            lambda: venue.broker.positions(QueryPositions(venue.account)),
            lambda: venue.broker.open_orders(QueryOpenOrders(venue.account)),
            lambda: venue.broker.fills_since(venue.account, FILLS_START),
            lambda: venue.broker.balance(QueryBalance(venue.account)),
        ):
            with pytest.raises(ServiceUnavailable):
                query()
    assert positions(venue) == {"ESZ13": 1}


def test_a_stop_moved_in_place_rests_throughout_under_its_new_id(venue: Venue) -> None:
    """A broker that modifies orders (``StopModifier``) moves a stop with one modify: the same
    order rests on at the new price, under the move's id; the old id answers cancelled (and
    cancelling it leaves the moved stop resting); the move fills under its own id."""
    if not isinstance(venue.broker, StopModifier):
        pytest.skip(f"{venue.name} moves a stop by cancel, then place (no in-place modify)")
    venue.trade(at(1), "1800.00")
    venue.broker.place_order(order(venue, client_order_id(SESSION, 1, 0)))
    fills_of(venue, 1)
    old_id = stop_id_of(1)
    move_id = f"{old_id.split('-', 1)[0]}-move-2"
    placed = venue.broker.place_order(stop(venue, old_id, "1790.00"))
    moved = venue.broker.modify_stop(venue.account, old_id, Decimal("1795.00"), move_id)
    assert (moved.client_order_id, moved.status) == (move_id, "working")
    assert moved.broker_order_id == placed.broker_order_id
    assert status(venue, old_id) == "cancelled"
    assert venue.broker.cancel_order(CancelOrder(venue.account, old_id)).status == "cancelled"
    [resting] = venue.broker.open_orders(QueryOpenOrders(venue.account))
    assert (resting.client_order_id, resting.stop_price) == (move_id, Decimal("1795.00"))
    assert venue.broker.place_order(stop(venue, move_id, "1795.00")).duplicate
    venue.trade(at(2), "1794.75")
    _, exit_ = fills_of(venue, 2)
    assert (exit_.client_order_id, exit_.session_id, exit_.price) == (
        move_id,
        SESSION,
        Decimal("1794.75"),
    )
    assert positions(venue) == {}


def stop_id_of(n: int) -> str:
    """The session's ``n``-th protective stop id (``<hex>-stop-<n>``)."""
    return f"{client_order_id(SESSION, 0, 0).split('-', 1)[0]}-stop-{n}"


def test_a_stop_whose_entry_never_went_out_never_fills(venue: Venue) -> None:
    """An attached stop sent on its own while its entry never reached the broker (dropped or
    refused) must not work by itself: it would open a position instead of protecting one."""
    venue.trade(at(1), "1800.00")
    entry_id = client_order_id(SESSION, 7, 0)
    protective = stop(venue, attached_stop_id(entry_id), "1795.00", parent_client_order_id=entry_id)
    venue.broker.place_order(protective)
    venue.trade(at(2), "1794.00")
    venue.trade(at(3), "1793.00")
    venue.work()
    assert all_fills(venue) == []
    assert positions(venue) == {}
