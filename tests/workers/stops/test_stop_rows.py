"""The protective stops' SQL rows against real SQLite and PostgreSQL (the ``engine`` of
``tests.workers.db.test_records``): the newest stop before an order, and the newest at a side
and price, are found among the newest rows whose ids name stops, whatever the session's
history."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models.tables import OrderRow
from tests.workers.db.test_records import engine, new_order, new_session
from workers.stops.rows import newest_stop, newest_stop_at

__all__ = ["engine"]  # the parametrized fixture, used here by name

HEX = "0123456789abcdef"


def test_the_newest_stop_before_an_order_whatever_came_before(engine: Engine) -> None:
    session = new_session(engine, "stops")
    price = {"limit_price": None, "stop_price": Decimal("1760.00")}
    stop = {"order_type": "stop", "intent": "exit", "side": "sell", **price}
    with Session(engine) as db, db.begin():
        for n in range(1, 41):  # a long history of stops, each cancelled by the next
            db.add(new_order(session.id, f"{HEX}-stop-{n}", status="cancelled", **stop))
        db.add(new_order(session.id, f"{HEX}-move-7", status="working", **stop))
        for n in range(20):  # stop entries (not protective stops) decided after it
            entry = {"order_type": "stop", "intent": "entry", **price}
            db.add(new_order(session.id, f"{HEX}-{8 + n}-0", **entry))
        db.add(new_order(session.id, f"{HEX}-28-0", order_type="market", intent="exit"))
    with Session(engine) as db:
        rows = db.execute(select(OrderRow.client_order_id, OrderRow.id)).all()
        ids = {coid: row_id for coid, row_id in rows}
    newest = newest_stop(engine, session.id, ids[f"{HEX}-28-0"])
    assert newest is not None and newest.client_order_id == f"{HEX}-move-7"
    older = newest_stop(engine, session.id, ids[f"{HEX}-move-7"])
    assert older is not None and older.client_order_id == f"{HEX}-stop-40"
    assert newest_stop(engine, session.id, ids[f"{HEX}-stop-1"]) is None
    at = newest_stop_at(engine, session.id, "sell", Decimal("1760.00"))
    assert at is not None and at.client_order_id == f"{HEX}-move-7", "entries at it left out"
    assert newest_stop_at(engine, session.id, "buy", Decimal("1760.00")) is None
    assert newest_stop_at(engine, session.id, "sell", Decimal("1761.00")) is None
