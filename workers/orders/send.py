"""Sending orders to the session's broker and bringing their fills back.

The order row was written before anything is sent. Sending is idempotent: the client order id
is deterministic and the broker refuses a duplicate, answering with the original order. An
order the broker refuses or cancels leaves the session's working copies at once.

A session's orders reach the broker in the order they were decided, however many workers run
the send tasks: before placing an order, its task places every earlier order of the session
whose row is still ``new`` (a duplicate is refused and answered with the original). The
broker's fill log, which every session applies in order, therefore follows the decisions, and
the same replay gives the same fills, positions and P&L with one worker or many.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session as DbSession

from models.codec import decode_field, state_key
from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from models.state import OpenPosition, OrderStatus, WorkingOrder
from models.tables import OrderRow, TradingSessionRow
from trading.exceptions import BadInput, RetryLater, UnknownSession
from trading.market import epoch_ms
from trading.stops import attached_stop_id
from workers.brokers.base import AccountManager, works_in_data_time
from workers.brokers.commands import OrderAck, PlaceOrder, QueryOrder
from workers.db.engines import reader
from workers.db.event_rows import record_event
from workers.db.order_rows import FINAL_STATUSES, get_order_row, update_order_row
from workers.db.session_rows import get_session_row
from workers.orders.fills import LOCK_WAIT_S, deliver_fills
from workers.risk.after_fill import release_entry
from workers.runtime import Runtime
from workers.state.store import StateChanges
from workers.stops.horizon import stop_horizon
from workers.stops.sync import clear_for_exit, is_move_id, is_stop_id, move_in_place, parent_of
from workers.stops.touches import (
    decided_in_unfilled_touch,
    drop_touches_of,
    settle_ended_touches,
    settle_unfilled_touch,
)
from workers.ticks.latency_probe import record_accepted

log = logging.getLogger(__name__)

FINAL = FINAL_STATUSES
BROKER_TO_LOCAL: dict[str, OrderStatus] = {
    "working": "working",
    "filled": "filled",
    "cancelled": "cancelled",
    "rejected": "rejected",
    "unknown": "lost",
}


ENDED_THERE = frozenset({"cancelled", "unknown"})


@dataclass(frozen=True, slots=True)
class SendOutcome:
    status: str
    duplicate: bool = False
    fills_applied: int = 0
    ended_at_broker: bool = False
    """The order was open here and a live broker answered that it ended unfilled (cancelled
    or unknown there): the broker ended it, not the fleet (whose cancels close the row first,
    and whose dropped exits never reach the broker). Never set for a broker that works in data
    time (``works_in_data_time``): it ends a stop only as the fleet asked."""

    @property
    def resting(self) -> bool:
        return self.status == "working"


@dataclass(frozen=True, slots=True)
class _Rows:
    """What sending or polling an order reads from SQL, in one transaction."""

    session: TradingSessionRow
    order: OrderRow
    unsent_before: list[OrderRow]
    """The session's orders written before this one that the broker never answered (status
    ``new``), oldest first: the tick path writes rows in the order it decides them."""


_SESSION_AND_ORDER = (
    select(TradingSessionRow, OrderRow)
    .join(OrderRow, OrderRow.session_id == TradingSessionRow.id)
    .where(TradingSessionRow.id == bindparam("sid"), OrderRow.client_order_id == bindparam("coid"))
)
_UNSENT_BEFORE = (
    select(OrderRow)
    .where(
        OrderRow.session_id == bindparam("sid"),
        OrderRow.id < bindparam("before"),
        OrderRow.status == "new",
    )
    .order_by(OrderRow.id)
)
"""Statements built once: SQLAlchemy caches a statement's compiled form by the statement."""


def _session_and_order(rt: Runtime, session_id: str, coid: str, *, unsent: bool) -> _Rows:
    """The session's and the order's rows (and, with ``unsent``, the unsent rows before it):
    reads of one statement each (``reader``), the first two rows in one."""
    with DbSession(reader(rt.engine), expire_on_commit=False) as db:
        found = db.execute(_SESSION_AND_ORDER, {"sid": session_id, "coid": coid}).first()
        if found is None:
            if get_session_row(db, session_id) is None:
                raise UnknownSession(session_id)
            raise LookupError(f"order {coid} has no row; it cannot be sent")
        session, order = found[0], found[1]
        if not unsent or order.status in FINAL:
            return _Rows(session, order, [])
        before = list(db.scalars(_UNSENT_BEFORE, {"sid": session_id, "before": order.id}))
    return _Rows(session, order, before)


def session_broker(rt: Runtime, session: TradingSessionRow) -> AccountManager:
    args: dict[str, Any] = dict(session.account_manager_args)
    return rt.broker(session.account_manager, args)


def send_order(rt: Runtime, session_id: str, client_order_id: str) -> SendOutcome:
    """Place the order at the broker (once, whatever the retries), then apply its fills."""
    rows = _session_and_order(rt, session_id, client_order_id, unsent=True)
    session, row = rows.session, rows.order
    if row.status in FINAL:
        return SendOutcome(row.status)
    broker = session_broker(rt, session)
    for earlier in rows.unsent_before:
        _record_ack(rt, session, _send(rt, broker, session, earlier))
    ack = _send(rt, broker, session, row)
    accepted = ack.status in ("working", "filled") and not ack.duplicate
    if accepted and rt.diagnostics.latency_probe and row.decided_at is not None:
        record_accepted(rt.redis, row.decided_at)
    outcome = _after_ack(rt, broker, session, ack)
    live = not works_in_data_time(broker)
    ended = live and ack.status in ENDED_THERE and bool(ack.broker_order_id)
    return replace(outcome, ended_at_broker=ended) if ended else outcome


def _send(
    rt: Runtime, broker: AccountManager, session: TradingSessionRow, row: OrderRow
) -> OrderAck:
    """Place one order; an exit, and a stop move, first cancel the session's resting
    protective stops as of its decision and are answered ``cancelled`` without reaching the
    broker when one of them had already filled (the stop closed the position; sending the
    exit too would reverse it, and the moved stop would protect nothing)."""
    coid = row.client_order_id
    if row.intent == "entry" and not works_in_data_time(broker):
        if _held_by_touch(rt, session.id) and (
            not settle_ended_touches(rt.store, rt.engine, session.id)
            or _held_by_touch(rt, session.id)
        ):
            raise RetryLater(
                f"entry {coid} waits: the session's protective stop was touched and its fill "
                "has not come back from the broker"
            )
        if _decided_on_unfilled_touch(rt, row):
            message = (
                f"entry {coid} dropped: decided while a protective stop the broker never "
                "filled was taken as closed (the position is still held)"
            )
            record_event(
                rt.engine, session.id, "risk", "warning", message, {"client_order_id": coid}
            )
            return OrderAck(coid, "", "cancelled")
    if is_move_id(coid) and rt.settings.stops.protective:
        moved = move_in_place(rt.store, rt.engine, broker, row, session.account)
        if moved is not None:
            return moved
    replaces_stops = (row.intent == "exit" and not is_stop_id(coid)) or is_move_id(coid)
    if (
        replaces_stops
        and rt.settings.stops.protective
        and not clear_for_exit(rt.store, rt.engine, broker, row, session.account)
    ):
        if is_move_id(coid):
            log.info("stop move %s dropped: its position was closed by a stop before it", coid)
        else:
            message = f"exit {coid} dropped: the protective stop already closed the position"
            record_event(rt.engine, session.id, "risk", "info", message, {"client_order_id": coid})
        return OrderAck(coid, "", "cancelled")
    return _place(rt, broker, session, row)


def _held_by_touch(rt: Runtime, session_id: str) -> bool:
    """Whether an entry must not go to a live broker yet: the session holds a protective stop
    it saw touched whose fill has not come back (``_progress.stops_out``). The session took
    that position as closed, but the broker may not have filled the stop (it was not working
    yet, or its market never reached it), and the entry would then add to a position still
    held. It goes out once the stop's fill is applied, or once the touch is found to be one the
    broker will not fill (``workers.stops.touches``: the stop still works there after a grace,
    or ended there unfilled; the entry is then cancelled). A touch of the stop of an entry not
    filled yet (this one's, or a later one's) does not hold it: that stop rests at the broker
    only from its entry's fill (``workers.orders.fills`` settles such a touch then)."""
    raw: list[Any] = rt.redis.hmget(state_key(session_id), [PROGRESS_FIELD, "orders"])  # type: ignore[assignment]
    progress, orders = (v.decode() if isinstance(v, bytes) else None for v in raw)
    outs = TickProgress.from_json(progress).stops_out if progress else ()
    if not outs:
        return False
    pending: dict[str, WorkingOrder] = decode_field("orders", orders) if orders else {}
    unfilled = {
        (1 if order.side == "buy" else -1, order.stop_price)
        for order in pending.values()
        if order.intent == "entry" and order.stop_price is not None and not order.filled_quantity
    }
    return any((out.direction, out.price) not in unfilled for out in outs)


def _decided_on_unfilled_touch(rt: Runtime, row: OrderRow) -> bool:
    """Whether the entry ``row`` was decided while the session took as closed a position whose
    stop the broker never filled (``workers.stops.touches.record_unfilled_touch``)."""
    if row.decided_at is None:
        return False
    return decided_in_unfilled_touch(rt.redis, row.session_id, epoch_ms(row.decided_at))


def _place(
    rt: Runtime, broker: AccountManager, session: TradingSessionRow, row: OrderRow
) -> OrderAck:
    """Place one order; an entry goes out with the protective stop decided with it (one
    order-sends-order), which its own send then finds placed (a duplicate). The stop's row
    is read right before: another process (a fill's stop sync) may have placed it since."""
    stop = None
    if row.intent == "entry" and not is_stop_id(row.client_order_id):
        stop_row = get_order_row(rt.engine, attached_stop_id(row.client_order_id))
        if stop_row is not None and stop_row.status == "new":
            stop = _command(session, stop_row, None)
    try:
        return broker.place_order(_command(session, row, stop))
    except BadInput as exc:
        if stop is None:
            raise
        log.warning(
            "order %s goes out without its stop (%s); the stop follows", row.client_order_id, exc
        )
        return broker.place_order(_command(session, row, None))


def _command(session: TradingSessionRow, row: OrderRow, stop: PlaceOrder | None) -> PlaceOrder:
    if row.decided_at is None:
        raise LookupError(f"order {row.client_order_id} has no decision time")
    return PlaceOrder(
        account=session.account,
        session_id=session.id,
        client_order_id=row.client_order_id,
        contract=row.contract,
        side=row.side,
        quantity=row.quantity,
        order_type=row.order_type,
        limit_price=row.limit_price,
        stop_price=row.stop_price,
        time_in_force=row.time_in_force,
        decided_at=row.decided_at,
        parent_client_order_id=parent_of(row.client_order_id),
        attached_stop=stop,
    )


def poll_order(rt: Runtime, session_id: str, client_order_id: str) -> SendOutcome:
    """Let the broker match a resting order against new prices, then apply any fills; a
    protective stop only against the prices the session has seen (``matching_horizon``),
    none while the session has no state (lost: it is recovered first)."""
    rows = _session_and_order(rt, session_id, client_order_id, unsent=False)
    session, row = rows.session, rows.order
    if row.status in FINAL:
        return SendOutcome(row.status)
    broker = session_broker(rt, session)
    if works_in_data_time(broker):
        stop = is_stop_id(client_order_id)
        horizon = stop_horizon(rt.redis, rt.engine, row) if stop else None
        broker.match_order(session.account, client_order_id, horizon)  # type: ignore[attr-defined]
    answer = broker.order(QueryOrder(session.account, client_order_id))
    status = "unknown" if answer is None else answer.status
    ack = OrderAck(client_order_id, "" if answer is None else answer.broker_order_id, status)
    outcome = _after_ack(rt, broker, session, ack)
    if status == "working" and is_stop_id(client_order_id) and not works_in_data_time(broker):
        settle_unfilled_touch(rt.store, rt.engine, session_id, row)
    ended = status in ENDED_THERE and not works_in_data_time(broker)
    return replace(outcome, ended_at_broker=ended) if ended else outcome


def recheck_order(
    rt: Runtime, broker: AccountManager, session: TradingSessionRow, client_order_id: str
) -> str:
    """Read one order's status at the broker and record it on its row, as ``poll_order``
    does, but without matching it against prices and without applying fills (the caller
    applies the account's fills once for all its orders). An order the broker does not
    know is recorded ``lost``, as by ``poll_order``; the broker's status is returned."""
    answer = broker.order(QueryOrder(session.account, client_order_id))
    status = "unknown" if answer is None else answer.status
    ack = OrderAck(client_order_id, "" if answer is None else answer.broker_order_id, status)
    _record_ack(rt, session, ack)
    return status


def _after_ack(
    rt: Runtime, broker: AccountManager, session: TradingSessionRow, ack: OrderAck
) -> SendOutcome:
    _record_ack(rt, session, ack)
    statuses: dict[str, OrderStatus] = {}
    applied = deliver_fills(
        rt.redis,
        rt.store,
        rt.engine,
        broker,
        session.account,
        rt.settings.risk,
        rt.settings.stops,
        statuses=statuses,
    )
    if ack.status == "filled" and statuses.get(ack.client_order_id) != "filled":
        # Its fills are applied now; filled at the broker is filled here, whatever quantity
        # the row asked for (a bracket the broker cut to its entry's partial fill).
        broker_id = ack.broker_order_id or None
        update_order_row(rt.engine, ack.client_order_id, "filled", broker_id, metrics=rt.redis)
    return SendOutcome(ack.status, ack.duplicate, applied)


def _record_ack(rt: Runtime, session: TradingSessionRow, ack: OrderAck) -> None:
    """The broker's answer on the order row; a dead order leaves the working copies."""
    local = BROKER_TO_LOCAL[ack.status]
    if local != "filled":
        broker_id = ack.broker_order_id or None
        update_order_row(rt.engine, ack.client_order_id, local, broker_id, metrics=rt.redis)
    if local in {"cancelled", "rejected", "lost"}:
        _drop_working_order(rt, session.id, ack.client_order_id, local)


def _drop_working_order(rt: Runtime, session_id: str, coid: str, status: str) -> None:
    with rt.store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
        orders: dict[str, WorkingOrder] = lease.value("orders")
        if coid not in orders:
            return
        remaining = {k: v for k, v in orders.items() if k != coid}
        meta = drop_touches_of(lease, orders[coid])
        rt.store.write(lease, StateChanges.of({"orders": remaining}, meta=meta))
        if orders[coid].intent == "entry":
            row = get_session_row(rt.engine, session_id)
            position: OpenPosition | None = lease.value("open_position")
            if row is not None:
                release_entry(
                    rt.redis, row.account, session_id, position, remaining, rt.settings.risk
                )
    log.warning("session %s: order %s is %s at the broker", session_id, coid, status)
