"""``stop_session`` and ``start_session``: take one session out of the fleet, and back.

A stopped session is SQL status ``stopped`` and state ``trading`` false. Its strategy does not
run (the tick path still folds its ticks into candles, so its history stays current), and
everything that serves active sessions leaves it alone: reconciliation, recovery, roll checks
and the halt's cancels and exits.

That is why only a FLAT session with no working order stops: nobody would watch a position or
an order of a stopped session. A session holding a position or any open order (an entry, an
exit, a protective stop) is refused with "flatten it first", and so is one in the middle of a
roll; nothing is written. The check and the ``trading`` write are one step under the session's
lock, so no tick step decides an order in between.

Starting makes it ``active`` again (first, so a start cut short leaves an active session that
does not trade: reconciled, safe) and then ``trading`` true: its strategy runs from its next
closed candle, its entries still subject to the risk checks and any halt of its account. It
also restarts an active session that stopped trading (a strategy error, an aborted roll).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from models.state import OpenPosition, WorkingOrder
from models.tables import OrderRow
from trading.exceptions import BadInput
from workers.db.order_rows import FINAL_STATUSES
from workers.db.session_rows import set_session_status
from workers.operations.audit import operator_event
from workers.operations.flatten import (
    LOCK_WAIT_S,
    refuse_while_rolling,
    require_session,
    state_flag,
)
from workers.runtime import Runtime
from workers.state.store import StateChanges
from workers.ticks.step import OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class StopReport:
    session_id: str
    name: str
    status: str
    trading: bool

    def line(self) -> str:
        trading = "trading" if self.trading else "not trading"
        return f"session {self.name} ({self.session_id}) is {self.status}, {trading}"


def stop_session(rt: Runtime, session_id: str, actor: str) -> StopReport:
    """Stop a flat session with no open order (see the module); refused otherwise."""
    row = require_session(rt, session_id)
    refuse_while_rolling(rt, row, "stop")
    if row.status == "stopped":
        raise BadInput(f"session {row.name} is already stopped")
    with rt.store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
        open_rows = _open_order_rows(rt, session_id)
        position: OpenPosition | None = lease.value("open_position")
        orders: dict[str, WorkingOrder] = lease.value("orders")
        held = 0 if position is None else position.quantity
        working = sorted(
            {c for c, o in orders.items() if o.status in OPEN_STATUSES} | set(open_rows)
        )
        if held or working:
            holds = [f"a position of {held}"] if held else []
            holds += [f"{len(working)} open order(s) ({', '.join(working[:3])})"] if working else []
            raise BadInput(
                f"cannot stop session {row.name}: it holds {' and '.join(holds)}; "
                f"flatten it first (tradefleet session flatten {session_id})"
            )
        rt.store.write(lease, StateChanges.of({"trading": False}))
    set_session_status(rt.engine, session_id, "stopped")
    report = StopReport(session_id, row.name, "stopped", False)
    operator_event(rt.engine, session_id, actor, "session stopped", {"name": row.name})
    return report


def start_session(rt: Runtime, session_id: str, actor: str) -> StopReport:
    """Make the session active and trading again (see the module)."""
    row = require_session(rt, session_id)
    refuse_while_rolling(rt, row, "start")
    trading = state_flag(rt, session_id, "trading")
    if row.status == "active" and trading:
        raise BadInput(f"session {row.name} is already active and trading")
    if row.status != "active":
        set_session_status(rt.engine, session_id, "active")
    with rt.store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
        rt.store.write(lease, StateChanges.of({"trading": True}))
    report = StopReport(session_id, row.name, "active", True)
    operator_event(
        rt.engine, session_id, actor, "session started", {"name": row.name, "was": row.status}
    )
    return report


def _open_order_rows(rt: Runtime, session_id: str) -> list[str]:
    """Client order ids of the session's order rows not final yet (sent or to be sent)."""
    query = select(OrderRow.client_order_id).where(
        OrderRow.session_id == session_id, OrderRow.status.not_in(FINAL_STATUSES)
    )
    with DbSession(rt.engine) as db:
        return list(db.scalars(query).all())


__all__ = ["StopReport", "start_session", "stop_session"]
