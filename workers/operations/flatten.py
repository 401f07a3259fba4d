"""``flatten_session``: take one session to flat here and now.

Its open entry orders are cancelled at the broker first (an entry filling after the exit was
sized would leave a position), then its exit to flat is decided under the session's lock like
a tick step's order (the next signal sequence, a deterministic client order id, the row
written before it is sent) and sent; its fill is applied as any other. The exit is sized on
the position plus what its remaining open orders (exits, protective stops) would still do.
Its row and the entries' cancellations are counted (``tradefleet_orders_total``) as every
other writer's are.

Flattening does not stop the session: its strategy may enter again at a later candle. To keep
it flat, halt its account (``tradefleet halt --account``) or stop it once flat
(``workers.operations.stop``). A session in the middle of a roll is refused: the roll's own
orders move its position (abort the roll first).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from models.codec import decode_field, state_key
from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from models.state import OpenPosition, OrderTemplate, WorkingOrder
from models.tables import TradingSessionRow
from trading.exceptions import BadInput, UnknownSession
from trading.intents import client_order_id
from workers.brokers.commands import CancelOrder
from workers.db.order_rows import insert_order_if_absent, update_order_row
from workers.db.roll_rows import unfinished_roll
from workers.db.session_rows import get_session_row
from workers.operations.audit import operator_event
from workers.orders.send import (
    BROKER_TO_LOCAL,
    _drop_working_order,
    send_order,
    session_broker,
)
from workers.runtime import Runtime
from workers.state.store import StateChanges
from workers.ticks.step import EPOCH, OPEN_STATUSES

LOCK_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class FlattenReport:
    session_id: str
    cancelled: list[str]
    exit: str | None
    """The exit's client order id; None when the session was flat already."""

    def line(self) -> str:
        sent = f"exit {self.exit} sent" if self.exit else "already flat, no exit sent"
        return f"session {self.session_id}: {len(self.cancelled)} entry orders cancelled, {sent}"


def flatten_session(rt: Runtime, session_id: str, actor: str) -> FlattenReport:
    """Cancel the session's open entries and send its exit to flat (see the module); an
    ``operator`` event names ``actor``."""
    row = require_session(rt, session_id)
    refuse_while_rolling(rt, row, "flatten")
    cancelled = cancel_entries(rt, row)
    coid = decide_exit(rt, row)
    details = {"account": row.account, "cancelled": cancelled, "exit": coid}
    if coid is not None:
        try:
            send_order(rt, row.id, coid)
        except Exception as exc:
            failed = f"flatten: exit {coid} decided, sending it failed ({type(exc).__name__})"
            operator_event(rt.engine, row.id, actor, failed, details, severity="error")
            raise
    report = FlattenReport(row.id, cancelled, coid)
    operator_event(rt.engine, row.id, actor, f"flattened: {report.line()}", details)
    return report


def require_session(rt: Runtime, session_id: str) -> TradingSessionRow:
    """The session's row (``UnknownSession`` if none), refused if its Redis state is lost."""
    row = get_session_row(rt.engine, session_id)
    if row is None:
        raise UnknownSession(session_id)
    if not rt.store.exists(session_id):
        raise BadInput(
            f"session {row.name} has no state in Redis (it needs recovery: "
            f"tradefleet recover {session_id})"
        )
    return row


def roll_in_progress(rt: Runtime, row: TradingSessionRow) -> str | None:
    """What says the session is in a roll (its unfinished roll, else its state's ``rolling``
    flag), or None: while it is, the roll's own orders move its position."""
    roll = unfinished_roll(rt.engine, row.id)
    if roll is not None:
        return f"roll {roll.id} is {roll.status}"
    return "it is rolling" if state_flag(rt, row.id, "rolling") else None


def refuse_while_rolling(rt: Runtime, row: TradingSessionRow, action: str) -> None:
    """``BadInput`` if the session is in a roll (``roll_in_progress``)."""
    which = roll_in_progress(rt, row)
    if which is not None:
        raise BadInput(
            f"cannot {action} session {row.name}: {which}; resume or abort the roll first "
            "(tradefleet roll ID --resume | --abort)"
        )


def state_flag(rt: Runtime, session_id: str, name: str) -> bool:
    """One boolean field of the session's state (``trading``, ``rolling``), read unlocked."""
    raw: bytes | None = rt.redis.hget(state_key(session_id), name)  # type: ignore[assignment]
    return raw is not None and bool(decode_field(name, raw.decode()))


def cancel_entries(rt: Runtime, row: TradingSessionRow) -> list[str]:
    """Cancel the session's open entry orders at the broker; their rows record it and they
    leave its working copies."""
    orders: dict[str, WorkingOrder] = rt.store.load(row.id).orders
    broker = session_broker(rt, row)
    done = []
    for coid, order in orders.items():
        if order.intent != "entry" or order.status not in OPEN_STATUSES:
            continue
        ack = broker.cancel_order(CancelOrder(row.account, coid))
        if ack.status in {"cancelled", "unknown"}:
            status = BROKER_TO_LOCAL[ack.status]
            broker_id = ack.broker_order_id or None
            update_order_row(rt.engine, coid, status, broker_id, metrics=rt.redis)
            _drop_working_order(rt, row.id, coid, status)
            done.append(coid)
    return done


def decide_exit(rt: Runtime, row: TradingSessionRow) -> str | None:
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
    insert_order_if_absent(rt.engine, row.id, order, now, template.time_in_force, metrics=rt.redis)
    return order.client_order_id


def _data_time(progress: TickProgress) -> datetime:
    """The decision time of a flatten exit: the session's last tick (the paper broker fills an
    order on the first price at or after its decision), or now with no tick yet."""
    if progress.last_ms is None:
        return datetime.now(UTC)
    return EPOCH + timedelta(milliseconds=progress.last_ms)


__all__ = [
    "FlattenReport",
    "cancel_entries",
    "decide_exit",
    "flatten_session",
    "refuse_while_rolling",
    "require_session",
    "roll_in_progress",
    "state_flag",
]
