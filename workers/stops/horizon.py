"""How far a broker that works resting orders only when asked (the paper broker) may work a
session's protective stops: a ``MarketBound`` in the session's own data.

A simulated broker working stops beyond what the session has seen would race its decisions;
bounded, the same replay fills the same stops at the same ticks however fast workers are, and
the tick step has always seen a touch before its fill comes back (``trading.stops``).
"""

from __future__ import annotations

from collections.abc import Mapping

import redis
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as DbSession

from models.codec import decode_field, state_key
from models.meta import CURSOR_FIELD
from models.state import WorkingOrder
from models.tables import OrderRow
from trading.orders import OPEN_STATUSES
from workers.brokers.paper.model import MarketBound, epoch_ms_ceil
from workers.db.engines import reader

"""The last stream entry the session's tick step processed (``workers.ticks.step``)."""


def matching_horizon(fields: Mapping[str, str]) -> MarketBound:
    """The stream entries the session has processed (its cursor), and never past the decision
    of an exit of its own still open (that exit cancels the stops as of its decision). A
    session with no cursor: nothing."""
    orders: dict[str, WorkingOrder] = decode_field("orders", fields.get("orders") or "{}")
    exits = [
        epoch_ms_ceil(o.created_at)
        for o in orders.values()
        if o.intent == "exit" and o.status in OPEN_STATUSES
    ]
    cursor = fields.get(CURSOR_FIELD)
    if not cursor:
        return MarketBound(until_ms=0)
    return MarketBound(until_ms=min(exits) if exits else None, through_id=cursor)


def session_horizon(client: redis.Redis, session_id: str) -> MarketBound:
    """``matching_horizon`` of the session's state as stored now (read without its lock)."""
    names = (CURSOR_FIELD, "orders")
    raw = client.hmget(state_key(session_id), list(names))
    values = [v.decode() if isinstance(v, bytes) else v for v in raw]  # type: ignore[union-attr]
    return matching_horizon({k: v for k, v in zip(names, values, strict=True) if v})


def until_replaced(engine: Engine, bound: MarketBound, row: OrderRow | None) -> MarketBound:
    """``bound``, and never past the decision of a later stop of the same session than the
    one of ``row`` (a move or a new stop replaced it as of then: its row is written before the
    session's cursor passes that decision, so a stop is never worked past its replacement)."""
    if row is None:
        return bound
    query = (
        select(OrderRow.decided_at)
        .where(
            OrderRow.session_id == row.session_id,
            OrderRow.order_type == "stop",
            OrderRow.id > row.id,
            OrderRow.decided_at.is_not(None),
        )
        .order_by(OrderRow.id)
        .limit(1)
    )
    with DbSession(reader(engine)) as db:
        replaced = db.scalar(query)
    if replaced is None:
        return bound
    until = epoch_ms_ceil(replaced)
    if bound.until_ms is not None:
        until = min(until, bound.until_ms)
    return MarketBound(until_ms=until, through_id=bound.through_id)


def stop_horizon(client: redis.Redis, engine: Engine, row: OrderRow) -> MarketBound:
    """How far the broker may work the protective stop of ``row`` now."""
    return until_replaced(engine, session_horizon(client, row.session_id), row)
