"""The kill switch: ``halt`` stops entries on accounts, cancels their open entry orders at the
broker and, with ``flatten``, sends each session's exit to flat; ``resume`` lifts it.

Halting is the account's ``halted`` flag (SQL row and risk hash): the entry check refuses every
entry while it is set; exits still pass. A flatten exit is decided under the session's lock
like a tick step's order (the next signal sequence, a deterministic client order id, the row
written before it is sent) and sent here and now; its fill is applied as any other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from models.state import OpenPosition, OrderTemplate, WorkingOrder
from models.tables import TradingSessionRow
from trading.intents import client_order_id
from workers.brokers.commands import CancelOrder
from workers.db.event_rows import record_event
from workers.db.order_rows import insert_order_if_absent
from workers.orders.send import _drop_working_order, send_order, session_broker
from workers.risk.accounts import active_sessions, known_accounts, set_halted
from workers.risk.book import RiskBook
from workers.runtime import Runtime
from workers.state.store import StateChanges
from workers.ticks.step import EPOCH, OPEN_STATUSES

log = logging.getLogger(__name__)
LOCK_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class HaltReport:
    accounts: list[str]
    cancelled: list[str]
    exits: list[str]


def halt(rt: Runtime, account: str | None, flatten: bool) -> HaltReport:
    book = RiskBook(rt.redis, rt.settings.risk)
    accounts = [account] if account is not None else known_accounts(rt.engine)
    cancelled: list[str] = []
    exits: list[str] = []
    for name in accounts:
        set_halted(rt.engine, book, name, True)
    for row in active_sessions(rt.engine, account):
        cancelled += _cancel_entries(rt, row)
        if flatten:
            coid = _decide_exit(rt, row)
            if coid is not None:
                send_order(rt, row.id, coid)
                exits.append(coid)
        record_event(
            rt.engine,
            row.id,
            "operator",
            "warning",
            "halted" + (" and flattened" if flatten else ""),
            {"account": row.account, "cancelled": len(cancelled), "flatten": flatten},
        )
    return HaltReport(accounts, cancelled, exits)


def resume(rt: Runtime, account: str | None) -> list[str]:
    book = RiskBook(rt.redis, rt.settings.risk)
    accounts = [account] if account is not None else known_accounts(rt.engine)
    for name in accounts:
        set_halted(rt.engine, book, name, False)
    return accounts


def _cancel_entries(rt: Runtime, row: TradingSessionRow) -> list[str]:
    """Cancel the session's open entry orders at the broker; they leave its working copies."""
    orders: dict[str, WorkingOrder] = rt.store.load(row.id).orders
    broker = session_broker(rt, row)
    done = []
    for coid, order in orders.items():
        if order.intent != "entry" or order.status not in OPEN_STATUSES:
            continue
        ack = broker.cancel_order(CancelOrder(row.account, coid))
        if ack.status in {"cancelled", "unknown"}:
            _drop_working_order(rt, row.id, coid, "cancelled")
            done.append(coid)
    return done


def _decide_exit(rt: Runtime, row: TradingSessionRow) -> str | None:
    """Record (state + SQL row) the exit that takes the session flat; its client order id."""
    with rt.store.locked(row.id, wait_s=LOCK_WAIT_S) as lease:
        position: OpenPosition | None = lease.value("open_position")
        orders: dict[str, WorkingOrder] = lease.value("orders")
        pending = sum(
            (o.quantity - o.filled_quantity) * (1 if o.side == "buy" else -1)
            for o in orders.values()
            if o.status in OPEN_STATUSES
        )
        held = (0 if position is None else position.quantity) + pending
        if held == 0:
            return None
        template: OrderTemplate = lease.value("order_template")
        progress = TickProgress.from_json(lease.fields.get(PROGRESS_FIELD))
        seq = progress.signal_seq + 1
        now = _data_time(progress)
        order = WorkingOrder(
            client_order_id=client_order_id(row.id, seq, 0),
            contract=row.contract if position is None else position.contract,
            side="sell" if held > 0 else "buy",
            quantity=abs(held),
            order_type="market",
            intent="exit",
            status="new",
            created_at=now,
        )
        meta = {PROGRESS_FIELD: replace(progress, signal_seq=seq).to_json()}
        changes = StateChanges.of({"orders": {**orders, order.client_order_id: order}}, meta=meta)
        rt.store.write(lease, changes)
    insert_order_if_absent(rt.engine, row.id, order, now, template.time_in_force)
    return order.client_order_id


def _data_time(progress: TickProgress) -> datetime:
    """The decision time of a flatten exit: the session's last tick (the paper broker fills an
    order on the first price at or after its decision), or now with no tick yet."""
    if progress.last_ms is None:
        return datetime.now(UTC)
    return EPOCH + timedelta(milliseconds=progress.last_ms)


__all__ = ["HaltReport", "halt", "resume"]
