"""``record_fill``: a fill's row, its order's status after its fills and the broker's id in one
transaction, against real SQLite and PostgreSQL (the ``engine`` of ``test_records``)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from models.tables import FillRow, OrderRow
from tests.workers.db.test_records import DECIDED, engine, new_order, new_session
from workers.db.order_rows import record_fill

__all__ = ["engine"]  # the parametrized fixture, used here by name

PRICE = Decimal("1773.25")


def _order(engine: Engine, coid: str, status: str = "working") -> None:
    session = new_session(engine, f"s-{coid}")
    with Session(engine) as db, db.begin():
        db.add(new_order(session.id, coid, status=status))


def _row(engine: Engine, coid: str) -> tuple[str, str | None, int]:
    with Session(engine) as db:
        order = db.scalars(select(OrderRow).where(OrderRow.client_order_id == coid)).one()
        fills = db.scalar(select(func.count()).where(FillRow.order_id == order.id))
        return order.status, order.broker_order_id, int(fills or 0)


def _record(engine: Engine, coid: str, execution_id: str, quantity: int) -> str | None:
    return record_fill(engine, execution_id, coid, quantity, PRICE, Decimal("2.50"), DECIDED, "B-1")


def test_fills_move_the_order_to_partly_filled_then_filled_once_each(engine: Engine) -> None:
    _order(engine, "o-1")  # quantity 2
    assert _record(engine, "o-1", "X-1", 1) == "partially_filled"
    assert _row(engine, "o-1") == ("partially_filled", "B-1", 1)
    assert _record(engine, "o-1", "X-1", 1) == "partially_filled", "the same execution again"
    assert _row(engine, "o-1") == ("partially_filled", "B-1", 1)
    assert _record(engine, "o-1", "X-2", 1) == "filled"
    assert _row(engine, "o-1") == ("filled", "B-1", 2)


def test_a_part_fill_never_reopens_a_final_order_and_a_fill_without_a_row_writes_nothing(
    engine: Engine,
) -> None:
    _order(engine, "o-2", status="cancelled")  # cancelled after a part had filled
    assert _record(engine, "o-2", "X-3", 1) == "partially_filled"
    assert _row(engine, "o-2") == ("cancelled", "B-1", 1), "the fill is kept, the row stays"
    assert _record(engine, "unknown", "X-4", 1) is None
    with Session(engine) as db:
        assert db.scalar(select(func.count()).select_from(FillRow)) == 1
