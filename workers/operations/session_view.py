"""One session as the console's session page shows it: its row in the fleet, its candles with
the entry and exit markers, orders, fills, events, strategy state and roll chain
(``session_detail``), and the live part its stream pushes (``session_live``). Reads only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from models.codec import candles_key, decode_candle, decode_field, state_key
from models.state import (
    SessionState,
    WorkingOrder,
)
from models.tables import (
    FillRow,
    OrderRow,
    RollRow,
    TradingSessionRow,
)
from trading.exceptions import UnknownSession
from trading.market import Candle
from trading.timeframes import parse_timeframe
from workers.db.event_rows import list_events
from workers.db.order_rows import FillRecord, session_fills
from workers.db.roll_rows import list_rolls
from workers.db.session_rows import get_session_row
from workers.operations.fleet import (
    EventView,
    SessionView,
    _event_view,
    fleet_view,
)
from workers.runtime import Runtime

SESSION_ROWS_SHOWN = 100
"""Orders, fills and events shown on a session's page (the newest)."""


@dataclass(frozen=True, slots=True)
class Marker:
    """An entry or exit on the chart: at the start of the candle its fill fell in."""

    time: datetime
    candle_time: datetime
    quantity: int
    price: Decimal
    intent: str


@dataclass(frozen=True, slots=True)
class OrderView:
    client_order_id: str
    contract: str
    side: str
    quantity: int
    order_type: str
    intent: str
    status: str
    limit_price: Decimal | None
    stop_price: Decimal | None
    broker_order_id: str | None
    decided_at: datetime | None
    working: WorkingOrder | None
    """The session's working copy of it, if it holds one."""


@dataclass(frozen=True, slots=True)
class FillView:
    execution_id: str
    client_order_id: str
    side: str
    quantity: int
    price: Decimal
    commission: Decimal
    filled_at: datetime


@dataclass(frozen=True, slots=True)
class SessionDetail:
    view: SessionView
    state: SessionState | None
    """None while the session has no state in Redis (it needs recovery)."""
    candles: list[Candle]
    markers: list[Marker]
    orders: list[OrderView]
    working_only: list[WorkingOrder]
    """Working copies with no SQL row (none is expected: the row is written first)."""
    fills: list[FillView]
    events: list[EventView]
    rolls: list[RollRow]
    roll_events: list[EventView]


def require_session(rt: Runtime, session_id: str) -> TradingSessionRow:
    """The session's SQL row; ``UnknownSession`` if there is none (nothing is written)."""
    row = get_session_row(rt.engine, session_id)
    if row is None:
        raise UnknownSession(session_id)
    return row


def markers_of(fills: Sequence[FillRecord], timeframe: str) -> list[Marker]:
    step = parse_timeframe(timeframe)
    return [Marker(f.time, step.bucket_start(f.time), f.quantity, f.price, f.intent) for f in fills]


def session_detail(rt: Runtime, session_id: str, now: datetime | None = None) -> SessionDetail:
    """Everything the session page shows; ``UnknownSession`` if no such session."""
    row = require_session(rt, session_id)
    view = fleet_view(rt, now, session_ids=[session_id]).sessions[0]
    state = rt.store.load(session_id) if rt.store.exists(session_id) else None
    working = {} if state is None else state.orders
    with DbSession(rt.engine) as db:
        order_rows = db.scalars(
            select(OrderRow)
            .where(OrderRow.session_id == session_id)
            .order_by(OrderRow.id.desc())
            .limit(SESSION_ROWS_SHOWN)
        ).all()
        fill_rows = db.execute(
            select(FillRow, OrderRow.client_order_id, OrderRow.side)
            .join(OrderRow, FillRow.order_id == OrderRow.id)
            .where(OrderRow.session_id == session_id)
            .order_by(FillRow.filled_at.desc(), FillRow.id.desc())
            .limit(SESSION_ROWS_SHOWN)
        ).all()
    orders = [
        OrderView(
            o.client_order_id,
            o.contract,
            o.side,
            o.quantity,
            o.order_type,
            o.intent,
            o.status,
            o.limit_price,
            o.stop_price,
            o.broker_order_id,
            o.decided_at,
            working.get(o.client_order_id),
        )
        for o in order_rows
    ]
    known = {o.client_order_id for o in order_rows}
    fills = [
        FillView(f.execution_id, coid, side, f.quantity, f.price, f.commission, f.filled_at)
        for f, coid, side in fill_rows
    ]
    return SessionDetail(
        view=view,
        state=state,
        candles=[] if state is None else list(state.candles),
        markers=markers_of(session_fills(rt.engine, session_id), row.timeframe),
        orders=orders,
        working_only=[o for coid, o in working.items() if coid not in known],
        fills=fills,
        events=[
            _event_view(e)
            for e in reversed(list_events(rt.engine, session_id, limit=SESSION_ROWS_SHOWN))
        ],
        rolls=list(reversed(list_rolls(rt.engine, session_id))),
        roll_events=[
            _event_view(e)
            for e in reversed(list_events(rt.engine, session_id, "roll", limit=SESSION_ROWS_SHOWN))
        ],
    )


@dataclass(frozen=True, slots=True)
class SessionLive:
    """What the session page's stream sends: its row, its newest closed candle and the
    forming one, the resting stop and the markers."""

    view: SessionView
    last_closed: Candle | None
    partial: Candle | None
    stop_price: Decimal | None
    markers: list[Marker]


def session_live(rt: Runtime, session_id: str, now: datetime | None = None) -> SessionLive:
    row = require_session(rt, session_id)
    view = fleet_view(rt, now, session_ids=[session_id]).sessions[0]
    with rt.redis.pipeline(transaction=False) as pipe:
        pipe.hget(state_key(session_id), "latest_partial_candle")
        pipe.lindex(candles_key(session_id), -1)
        raw_partial, raw_last = pipe.execute()
    partial: Candle | None = (
        decode_field("latest_partial_candle", raw_partial) if raw_partial else None
    )
    last = decode_candle(raw_last) if raw_last else None
    return SessionLive(
        view,
        last,
        partial,
        view.stop_price,
        markers_of(session_fills(rt.engine, session_id), row.timeframe),
    )
