"""Durable order and fill rows: written before an order is sent, and once per execution id.

A row written, a status it moves to and a fill recorded are counted here, once each, after the
transaction that made them (``metrics``: the sessions' Redis, ``workers.metrics``), so the
counts add up to the rows: ``tradefleet_orders_total{outcome}`` and ``tradefleet_fills_total``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import redis
from sqlalchemy import Update, bindparam, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.state import OrderStatus, WorkingOrder
from models.tables import FillRow, OrderRow
from workers.db.engines import reader
from workers.metrics.catalog import FILLS, ORDER_OUTCOMES, ORDERS, Metric
from workers.metrics.counters import count, count_each

FINAL_STATUSES: frozenset[str] = frozenset({"filled", "cancelled", "rejected", "lost"})
"""An order in one of these is over: it never works again."""


@dataclass(frozen=True, slots=True)
class OrderToWrite:
    """One decided order's row, before it is sent."""

    session_id: str
    order: WorkingOrder
    decided_at: datetime
    time_in_force: str

    def values(self) -> dict[str, object]:
        """The row's column values (the rest take their defaults)."""
        order = self.order
        return {
            "client_order_id": order.client_order_id,
            "session_id": self.session_id,
            "contract": order.contract,
            "side": order.side,
            "quantity": order.quantity,
            "order_type": order.order_type,
            "limit_price": order.limit_price,
            "stop_price": order.stop_price if order.order_type == "stop" else None,
            "time_in_force": self.time_in_force,
            "status": "new",
            "intent": order.intent,
            "decided_at": self.decided_at,
        }

    def row(self) -> OrderRow:
        return OrderRow(**self.values())


def insert_order_if_absent(
    engine: Engine,
    session_id: str,
    order: WorkingOrder,
    decided_at: datetime,
    time_in_force: str,
    *,
    metrics: redis.Redis | None = None,
) -> bool:
    """Write the order row before the order is sent; False if that client id is already there.
    A row written is counted (``created``) on ``metrics``."""
    with Session(engine) as db:
        if db.scalar(select(OrderRow.id).where(OrderRow.client_order_id == order.client_order_id)):
            return False
        db.add(OrderToWrite(session_id, order, decided_at, time_in_force).row())
        try:
            db.commit()
        except IntegrityError:
            db.rollback()
            return False
    if metrics is not None:
        count(metrics, ORDERS, "created")
    return True


def insert_orders_if_absent(engine: Engine, orders: Sequence[OrderToWrite]) -> int:
    """``insert_order_if_absent`` for many orders in one transaction (one commit, and one
    sync to disk, for all the orders a round of tick steps decided). Rows already there are
    kept; if another writer inserts one of them meanwhile, each is written on its own.
    Returns how many rows this call wrote (the tick path counts them with its round)."""
    if not orders:
        return 0
    ids = [item.order.client_order_id for item in orders]
    try:
        with engine.begin() as conn:
            present = set(conn.scalars(_PRESENT_ORDERS, {"ids": ids}))
            missing = {
                item.order.client_order_id: item
                for item in orders
                if item.order.client_order_id not in present
            }
            if missing:
                conn.execute(_INSERT_ORDER, [item.values() for item in missing.values()])
            return len(missing)
    except IntegrityError:
        pass  # another writer inserted one of them meanwhile: each on its own
    return sum(
        insert_order_if_absent(
            engine, item.session_id, item.order, item.decided_at, item.time_in_force
        )
        for item in orders
    )


_PRESENT_ORDERS = select(OrderRow.client_order_id).where(
    OrderRow.client_order_id.in_(bindparam("ids", expanding=True))
)
_INSERT_ORDER = insert(OrderRow)


def get_order_row(engine: Engine, client_order_id: str) -> OrderRow | None:
    with Session(reader(engine), expire_on_commit=False) as db:
        return db.scalar(_ORDER_ROW, {"coid": client_order_id})


_ORDER_ROW = select(OrderRow).where(OrderRow.client_order_id == bindparam("coid"))


def update_order_row(
    engine: Engine,
    client_order_id: str,
    status: OrderStatus,
    broker_order_id: str | None = None,
    *,
    metrics: redis.Redis | None = None,
) -> bool:
    """The order's new status (and the broker's id). Conditional statements: a final order
    (filled, cancelled, rejected, lost) is never reopened by a late answer (a poll that read
    ``working`` before a concurrent cancel filled the stop); only a fill may still end it.

    True when this call moved the row to ``status`` (the first statement only matches a row in
    another status, so of two racing calls one moves it); that move is counted on ``metrics``.
    An answer that repeats the status still records the broker's id."""
    values: dict[str, object] = {"coid": client_order_id, "to": status, "status": status}
    if broker_order_id is not None:
        values["broker_order_id"] = broker_order_id
        values["bid"] = broker_order_id
    reopens = status == "filled"
    with engine.begin() as conn:
        changed = bool(conn.execute(_MOVE_STATUS[reopens], values).rowcount)
        if not changed and broker_order_id is not None:
            conn.execute(_RECORD_BROKER_ID[reopens], values)
    if changed and metrics is not None and status in ORDER_OUTCOMES:
        count(metrics, ORDERS, status)
    return changed


def _status_update(*, may_end_final: bool) -> Update:
    """An update of one order's row (``coid``) whose SET comes from the parameters' column
    names; unless ``may_end_final`` it leaves a final row alone."""
    query = update(OrderRow).where(OrderRow.client_order_id == bindparam("coid"))
    return query if may_end_final else query.where(OrderRow.status.not_in(FINAL_STATUSES))


_MOVE_STATUS = {
    final: _status_update(may_end_final=final).where(OrderRow.status != bindparam("to"))
    for final in (True, False)
}
_RECORD_BROKER_ID = {
    final: _status_update(may_end_final=final).where(
        OrderRow.broker_order_id.is_(None) | (OrderRow.broker_order_id != bindparam("bid"))
    )
    for final in (True, False)
}
"""Statements built once (SQLAlchemy caches a statement's compiled form by the statement)."""


def status_after_fills(engine: Engine, client_order_id: str) -> OrderStatus:
    """``filled`` once the order's fill rows add up to its quantity, else
    ``partially_filled`` (an order filling in parts still works at the broker)."""
    with Session(engine) as db:
        row = db.execute(
            select(OrderRow.id, OrderRow.quantity).where(
                OrderRow.client_order_id == client_order_id
            )
        ).first()
        if row is None:
            return "filled"
        filled = db.scalar(
            select(func.coalesce(func.sum(FillRow.quantity), 0)).where(FillRow.order_id == row.id)
        )
    return "filled" if int(filled or 0) >= row.quantity else "partially_filled"


def insert_fill_if_absent(
    engine: Engine,
    execution_id: str,
    client_order_id: str,
    quantity: int,
    price: Decimal,
    commission: Decimal,
    filled_at: datetime,
    *,
    metrics: redis.Redis | None = None,
) -> bool:
    """Record one execution; False if it was already recorded (fills are idempotent). A fill
    recorded is counted on ``metrics`` (once per execution id, as its row)."""
    with Session(engine) as db:
        if db.scalar(select(FillRow.id).where(FillRow.execution_id == execution_id)):
            return False
        order_id = db.scalar(select(OrderRow.id).where(OrderRow.client_order_id == client_order_id))
        if order_id is None:
            return False
        db.add(
            FillRow(
                execution_id=execution_id,
                order_id=order_id,
                quantity=quantity,
                price=price,
                commission=commission,
                filled_at=filled_at,
            )
        )
        try:
            db.commit()
        except IntegrityError:
            db.rollback()
            return False
    if metrics is not None:
        count(metrics, FILLS)
    return True


def record_fill(
    engine: Engine,
    execution_id: str,
    client_order_id: str,
    quantity: int,
    price: Decimal,
    commission: Decimal,
    filled_at: datetime,
    broker_order_id: str | None,
    *,
    metrics: redis.Redis | None = None,
) -> OrderStatus | None:
    """``insert_fill_if_absent``, then ``status_after_fills`` recorded with
    ``update_order_row``, in one transaction that holds the order's row (``FOR UPDATE``): the
    fill path's SQL work in one commit. The order's status after its fills is returned (None
    when the order has no row: nothing is written). Counted as the three would count."""
    status: OrderStatus
    try:
        with engine.begin() as conn:
            held = conn.execute(_HOLD_ORDER, {"coid": client_order_id, "eid": execution_id}).first()
            if held is None:
                return None
            filled, known = held.filled, held.known
            if not known:
                row = {
                    "execution_id": execution_id,
                    "order_id": held.id,
                    "quantity": quantity,
                    "price": price,
                    "commission": commission,
                    "filled_at": filled_at,
                }
                conn.execute(_INSERT_FILL, row)
                filled = int(filled or 0) + quantity
            status = "filled" if int(filled or 0) >= held.quantity else "partially_filled"
            moved = held.status != status and (
                status == "filled" or held.status not in FINAL_STATUSES
            )
            values: dict[str, object] = {"status": status} if moved else {}
            if broker_order_id is not None and broker_order_id != held.broker_order_id:
                values["broker_order_id"] = broker_order_id
            if values:
                conn.execute(_SET_ORDER, {"oid": held.id, **values})
    except IntegrityError:
        # Another writer recorded this execution meanwhile (a database without row locks).
        insert_fill_if_absent(
            engine,
            execution_id,
            client_order_id,
            quantity,
            price,
            commission,
            filled_at,
            metrics=metrics,
        )
        status = status_after_fills(engine, client_order_id)
        update_order_row(engine, client_order_id, status, broker_order_id, metrics=metrics)
        return status
    if metrics is not None:
        counts: list[tuple[Metric, tuple[str, ...]]] = []
        if not known:
            counts.append((FILLS, ()))
        if moved and status in ORDER_OUTCOMES:
            counts.append((ORDERS, (status,)))
        count_each(metrics, counts)
    return status


_FILLED = (
    select(func.coalesce(func.sum(FillRow.quantity), 0))
    .where(FillRow.order_id == OrderRow.id)
    .scalar_subquery()
)
_KNOWN = (
    select(func.count(FillRow.id))
    .where(FillRow.order_id == OrderRow.id, FillRow.execution_id == bindparam("eid"))
    .scalar_subquery()
)
_HOLD_ORDER = (
    select(
        OrderRow.id,
        OrderRow.quantity,
        OrderRow.status,
        OrderRow.broker_order_id,
        _FILLED.label("filled"),
        _KNOWN.label("known"),
    )
    .where(OrderRow.client_order_id == bindparam("coid"))
    .with_for_update(of=OrderRow)
)
"""The order's row, held, with its filled quantity so far and whether execution ``eid`` is
among its fills: one statement."""
_INSERT_FILL = insert(FillRow)
_SET_ORDER = update(OrderRow).where(OrderRow.id == bindparam("oid"))


def count_rows(engine: Engine, session_id: str) -> tuple[int, int]:
    """(orders, fills) recorded for one session."""
    with Session(engine) as db:
        orders = db.scalars(select(OrderRow.id).where(OrderRow.session_id == session_id)).all()
        fills = db.scalars(select(FillRow.id).where(FillRow.order_id.in_(orders))).all()
        return len(orders), len(fills)


def acknowledged_orders(engine: Engine, session_id: str) -> list[str]:
    """The client order ids of the session's orders the broker acknowledged and that are
    not final yet (working, partially filled), oldest first."""
    with Session(engine) as db:
        return list(
            db.scalars(
                select(OrderRow.client_order_id)
                .where(
                    OrderRow.session_id == session_id,
                    OrderRow.status.in_(("working", "partially_filled")),
                )
                .order_by(OrderRow.id)
            ).all()
        )


def unsettled_order_count(engine: Engine, session_id: str) -> int:
    """How many of the session's orders are not final yet (new, sent, working, partially
    filled), leaving out stop orders resting at the broker: a protective stop works there by
    design until it is touched or cancelled."""
    with Session(reader(engine)) as db:
        rows = db.scalars(
            select(OrderRow.id).where(
                OrderRow.session_id == session_id,
                OrderRow.status.in_(("new", "sent", "working", "partially_filled")),
                ~((OrderRow.order_type == "stop") & (OrderRow.status == "working")),
            )
        ).all()
        return len(rows)


@dataclass(frozen=True, slots=True)
class FillRecord:
    """A recorded fill with its order's side, for reports."""

    time: datetime
    quantity: int
    """Signed: positive bought, negative sold."""
    price: Decimal
    commission: Decimal
    intent: str


def session_fills(engine: Engine, session_id: str) -> list[FillRecord]:
    """Every recorded fill of one session, oldest first."""
    with Session(engine) as db:
        rows = db.execute(
            select(FillRow, OrderRow.side, OrderRow.intent)
            .join(OrderRow, FillRow.order_id == OrderRow.id)
            .where(OrderRow.session_id == session_id)
            .order_by(FillRow.filled_at, FillRow.id)
        ).all()
        return [
            FillRecord(
                time=fill.filled_at,
                quantity=fill.quantity if side == "buy" else -fill.quantity,
                price=fill.price,
                commission=fill.commission,
                intent=intent,
            )
            for fill, side, intent in rows
        ]


def fill_time(engine: Engine, client_order_id: str) -> datetime | None:
    """When the order's first recorded fill happened (data time), or None."""
    with Session(reader(engine)) as db:
        return db.scalar(
            select(FillRow.filled_at)
            .join(OrderRow, FillRow.order_id == OrderRow.id)
            .where(OrderRow.client_order_id == client_order_id)
            .order_by(FillRow.filled_at)
            .limit(1)
        )
