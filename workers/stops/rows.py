"""The protective stops' ids and their SQL rows (``workers.stops.sync`` keeps them in line).

Ids: ``<hex>-stop-<n>`` (placed on its own by ``sync_stop``), ``<hex>-stop-<seq>-<leg>``
(attached to the entry ``<hex>-<seq>-<leg>``), ``<hex>-move-<seq>`` (a move the tick step
decided). A stop's record is its SQL order row (``order_type`` stop, ``intent`` exit).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Select, bindparam, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as DbSession

from models.state import WorkingOrder
from models.tables import OrderRow
from trading.intents import client_order_id
from trading.orders import OPEN_STATUSES
from trading.stops import attached_entry_id
from workers.db.engines import reader

STOP_ID = re.compile(r"([0-9a-f]{16})-(?:stop-([0-9]+)(?:-([0-9]+))?|move-([0-9]+))")
"""``<hex>-stop-<n>``: the n-th stop ``sync_stop`` placed for the session; ``<hex>-stop-<seq>-
<leg>``: the stop attached to the entry ``<hex>-<seq>-<leg>`` (decided with it); ``<hex>-move-
<seq>``: the stop that moved the session's stop as its signal ``seq`` (the tick step)."""


def is_stop_id(coid: str) -> bool:
    """Whether ``coid`` names a protective stop order (``<hex>-stop-<n>``)."""
    return STOP_ID.fullmatch(coid) is not None


def stop_id(session_id: str, n: int) -> str:
    """The ``n``-th protective stop of the session: deterministic, retry-safe."""
    prefix = client_order_id(session_id, 0, 0).split("-", 1)[0]
    return f"{prefix}-stop-{n}"


def is_move_id(coid: str) -> bool:
    """Whether ``coid`` names a stop move decided by the tick step (``<hex>-move-<seq>``)."""
    found = STOP_ID.fullmatch(coid)
    return found is not None and found.group(4) is not None


def parent_of(coid: str) -> str | None:
    """The entry a protective stop is attached to, or None (not an attached stop)."""
    return attached_entry_id(coid)


def has_open_stop_rows(engine: Engine, session_id: str) -> bool:
    """Whether the session has any open protective stop row (one indexed lookup: the
    question ``open_stop_rows`` answers in full, asked where the answer is usually no)."""
    with reader(engine).connect() as conn:
        return conn.scalar(_ANY_OPEN_STOP, {"sid": session_id}) is not None


_ANY_OPEN_STOP = (
    select(OrderRow.id)
    .where(
        OrderRow.session_id == bindparam("sid"),
        OrderRow.order_type == "stop",
        OrderRow.intent == "exit",
        OrderRow.status.in_(OPEN_STATUSES),
    )
    .limit(1)
)


def open_stop_rows(
    engine: Engine,
    session_id: str,
    *,
    before: int | None = None,
    pending: Mapping[str, WorkingOrder] | None = None,
) -> list[OrderRow]:
    """The session's protective stop rows that are not final, oldest first: only those
    decided before the order row ``before`` if given, and none attached to an entry still
    ``pending`` (a working copy of the session: until its fill is applied, its stop protects
    nothing the session holds), nor a move decided since such an entry (it moved that
    entry's stop)."""
    query = (
        select(OrderRow)
        .where(
            OrderRow.session_id == session_id,
            OrderRow.order_type == "stop",
            OrderRow.intent == "exit",
            OrderRow.status.in_(OPEN_STATUSES),
        )
        .order_by(OrderRow.id)
    )
    if before is not None:
        query = query.where(OrderRow.id < before)
    with DbSession(reader(engine), expire_on_commit=False) as db:
        rows = [row for row in db.scalars(query).all() if is_stop_id(row.client_order_id)]
    if not pending:
        return rows
    entries = [o.created_at for o in pending.values() if o.intent == "entry"]
    since = min(entries) if entries else None
    return [
        row
        for row in rows
        if parent_of(row.client_order_id) not in pending
        and not (
            since is not None
            and is_move_id(row.client_order_id)
            and row.decided_at is not None
            and row.decided_at >= since
        )
    ]


def stop_count(engine: Engine, session_id: str) -> int:
    query = select(func.count(OrderRow.id)).where(
        OrderRow.session_id == session_id,
        OrderRow.order_type == "stop",
        OrderRow.client_order_id.like("%-stop-%"),
    )
    with DbSession(reader(engine)) as db:
        return int(db.scalar(query) or 0)


def last_decided(engine: Engine, session_id: str) -> datetime | None:
    """When the session's newest stop was decided (a re-placed stop is decided no earlier)."""
    query = (
        select(OrderRow.decided_at)
        .where(OrderRow.session_id == session_id, OrderRow.order_type == "stop")
        .order_by(OrderRow.id.desc())
        .limit(1)
    )
    with DbSession(reader(engine)) as db:
        return db.scalar(query)


def newest_stop(engine: Engine, session_id: str, before: int) -> OrderRow | None:
    """The session's newest protective stop row written before row ``before``, any status."""
    return _first_stop(engine, _NEWEST_STOPS, {"sid": session_id, "before": before})


def newest_stop_at(engine: Engine, session_id: str, side: str, price: Decimal) -> OrderRow | None:
    """The session's newest protective stop row on ``side`` at ``price``, any status."""
    return _first_stop(engine, _NEWEST_AT, {"sid": session_id, "side": side, "price": price})


def _first_stop(
    engine: Engine, query: Select[tuple[OrderRow]], params: dict[str, object]
) -> OrderRow | None:
    with DbSession(reader(engine), expire_on_commit=False) as db:
        for row in db.scalars(query, params):
            if is_stop_id(row.client_order_id):
                return row
    return None


_MAYBE_STOPS = (
    select(OrderRow)
    .where(
        OrderRow.session_id == bindparam("sid"),
        OrderRow.order_type == "stop",
        or_(OrderRow.client_order_id.like("%-stop-%"), OrderRow.client_order_id.like("%-move-%")),
    )
    .order_by(OrderRow.id.desc())
    .limit(16)
)
"""The newest rows that may be protective stops (their ids say so; ``STOP_ID`` decides): a
few, not the session's whole history of stops."""
_NEWEST_STOPS = _MAYBE_STOPS.where(OrderRow.id < bindparam("before"))
_NEWEST_AT = _MAYBE_STOPS.where(
    OrderRow.side == bindparam("side"), OrderRow.stop_price == bindparam("price")
)
