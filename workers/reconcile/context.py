"""What the reconciliation passes read about a session and the sessions beside it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from models.codec import decode_field, state_key
from models.meta import LAST_FILL_FIELD, RECONCILE_FIELD
from models.state import ContractDetails, OpenPosition, WorkingOrder
from models.tables import OrderRow, Severity, TradingSessionRow
from trading.reconcile import OPEN_ORDER_STATUSES, LocalPosition, ReconcileMeta
from workers.brokers.base import AccountManager
from workers.db.event_rows import record_event
from workers.db.session_rows import get_session_row
from workers.orders.send import session_broker
from workers.runtime import Runtime
from workers.state.store import Lease, StateChanges
from workers.stops.sync import is_stop_id

log = logging.getLogger(__name__)

LOCK_WAIT_S = 5.0
"""How long a pass waits for the session's lock (a tick step holds it for milliseconds)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A session a pass may work on: active in SQL, with state in Redis."""

    row: TradingSessionRow
    broker: AccountManager

    @property
    def session_id(self) -> str:
        return self.row.id

    @property
    def account(self) -> str:
        return self.row.account


def now_utc() -> datetime:
    return datetime.now(UTC)


def describe(exc: BaseException) -> str:
    """One line naming the error."""
    text = str(exc).split("\n")[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def target_for(rt: Runtime, session_id: str) -> Target | str:
    """The session to reconcile, or why it is skipped."""
    row = get_session_row(rt.engine, session_id)
    if row is None:
        return "unknown session"
    if row.status != "active":
        return f"session is {row.status}"
    if not rt.store.exists(session_id):
        return "no state in Redis (it needs recovery)"
    return Target(row, session_broker(rt, row))


def read_fields(rt: Runtime, session_id: str) -> dict[str, str] | None:
    """The session's state hash as text (read without its lock), or None if it has none."""
    raw: Mapping[bytes, bytes] = rt.redis.hgetall(state_key(session_id))  # type: ignore[assignment]
    if not raw:
        return None
    return {_text(k): _text(v) for k, v in raw.items()}


def open_rows(rt: Runtime, session_id: str) -> list[OrderRow]:
    """The session's durable order rows that are not final, oldest first."""
    query = (
        select(OrderRow)
        .where(OrderRow.session_id == session_id, OrderRow.status.in_(OPEN_ORDER_STATUSES))
        .order_by(OrderRow.id)
    )
    with DbSession(rt.engine, expire_on_commit=False) as db:
        return list(db.scalars(query).all())


def account_peers(rt: Runtime, row: TradingSessionRow) -> list[TradingSessionRow]:
    """The other active sessions on the same account."""
    query = select(TradingSessionRow).where(
        TradingSessionRow.account == row.account,
        TradingSessionRow.status == "active",
        TradingSessionRow.id != row.id,
    )
    with DbSession(rt.engine, expire_on_commit=False) as db:
        return list(db.scalars(query).all())


def contract_of(fields: Mapping[str, str]) -> str:
    details: ContractDetails = decode_field("contract_details", fields["contract_details"])
    return details.symbol


def meta_of(fields: Mapping[str, str]) -> ReconcileMeta:
    return ReconcileMeta.from_json(fields.get(RECONCILE_FIELD))


def working_orders(fields: Mapping[str, str]) -> dict[str, WorkingOrder]:
    orders: dict[str, WorkingOrder] = decode_field("orders", fields["orders"])
    return orders


def held_position(fields: Mapping[str, str]) -> OpenPosition:
    """The session's position in its contract (flat when it has none)."""
    contract = contract_of(fields)
    position: OpenPosition | None = decode_field("open_position", fields["open_position"])
    return position if position is not None else OpenPosition(contract=contract)


def local_position(rt: Runtime, session_id: str, fields: Mapping[str, str]) -> LocalPosition:
    """The session's side of the comparison: quantity, orders in flight, last fill time (a
    protective stop, ``workers.stops.sync``, rests as long as its position: not in flight)."""
    contract = contract_of(fields)
    position = held_position(fields)
    in_other_contract = position.contract != contract and position.quantity != 0
    rolling: bool = decode_field("rolling", fields["rolling"])
    working = {
        coid
        for coid, order in working_orders(fields).items()
        if order.status in OPEN_ORDER_STATUSES
    }
    durable = {
        row.client_order_id
        for row in open_rows(rt, session_id)
        if not is_stop_id(row.client_order_id)
    }
    raw_fill = fields.get(LAST_FILL_FIELD)
    last_fill = datetime.fromisoformat(raw_fill) if raw_fill else None
    return LocalPosition(
        session_id=session_id,
        quantity=0 if position.contract != contract else position.quantity,
        open_orders=len(working | durable),
        last_fill_at=last_fill,
        rolling=rolling or in_other_contract,
    )


def write(
    rt: Runtime,
    lease: Lease,
    meta: ReconcileMeta,
    values: Mapping[str, Any] | None = None,
    more_meta: Mapping[str, str] | None = None,
) -> None:
    """One fenced write of state fields, the reconciliation record and ``more_meta``."""
    changes = StateChanges.of(
        values or {}, meta={RECONCILE_FIELD: meta.to_json(), **(more_meta or {})}
    )
    rt.store.write(lease, changes)


def record(
    rt: Runtime,
    session_id: str,
    severity: Severity,
    message: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """A reconciliation event row, and the same line in the log."""
    level = {"info": logging.INFO, "warning": logging.WARNING}.get(severity, logging.ERROR)
    log.log(level, "session %s: %s %s", session_id, message, dict(details or {}))
    record_event(rt.engine, session_id, "reconciliation", severity, message, details)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
