"""The book and matching as plain Python (no process): exact P&L over FIFO lots, brackets that
follow a partly filled parent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from tradovate_local.contracts import Catalog
from tradovate_local.marketdata import Tick
from tradovate_local.state import Book

NOW = datetime(2013, 12, 2, 14, 30, tzinfo=UTC)


def book() -> tuple[Book, int]:
    b = Book(Catalog(date(2013, 12, 1)), Decimal("2.50"))
    return b, b.add_account("A", 1, Decimal("1000"), NOW).id


def place(b: Book, account: int, action: str, qty: int, **kw: object) -> int:
    args: dict[str, object] = {
        "account_id": account,
        "symbol": "ESZ3",
        "action": action,
        "qty": qty,
        "order_type": "Market",
        "price": None,
        "stop_price": None,
        "tif": "Day",
        "text": None,
        "cl_ord_id": None,
        "is_automated": True,
        "now": NOW,
    }
    args.update(kw)
    order_id, _, _ = b.place(**args)  # type: ignore[arg-type]
    return order_id


def tick(b: Book, price: str, second: int) -> None:
    contract = b.catalog.by_name("ESZ3")
    assert contract is not None
    b.tick(contract, Tick(NOW.replace(second=second), Decimal(price), Decimal(1)))


def test_short_round_trip_exact_pnl() -> None:
    b, account = book()
    tick(b, "1800.25", 0)
    place(b, account, "Sell", 2)
    tick(b, "1799.00", 1)
    place(b, account, "Buy", 1)
    snapshot = b.cash_snapshot(account)
    assert snapshot is not None
    assert snapshot["realizedPnL"] == Decimal("62.50")  # 1.25 points x 50
    assert snapshot["openPnL"] == Decimal("62.50")  # the other contract, marked at 1799.00
    assert snapshot["totalCashValue"] == Decimal("1000") + Decimal("62.50") - Decimal("7.50")


def test_bracket_follows_a_partly_filled_parent() -> None:
    b, account = book()
    tick(b, "1800.00", 0)
    parent = place(
        b,
        account,
        "Buy",
        2,
        order_type="Limit",
        price=Decimal("1800.00"),
        parts=2,
        bracket={"action": "Sell", "orderType": "Stop", "stopPrice": "1790.00"},
    )
    child = b.orders[parent].bracket_ids[0]
    tick(b, "1800.00", 1)  # one of two parts
    assert (b.orders[parent].filled, b.orders[child].status, b.orders[child].cap) == (
        1,
        "Working",
        1,
    )
    b.cancel(parent, True, NOW)  # the parent ends partly filled: the bracket keeps 1
    assert b.orders[child].version.qty == 1
    tick(b, "1789.00", 2)
    assert b.orders[child].status == "Filled"
    assert sum(p.net_pos for p in b.positions.values()) == 0
