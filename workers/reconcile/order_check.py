"""One session's open orders against the broker's (``trading.reconcile.plan_orders``).

- filled at the broker, open here: its fills are applied (``deliver_fills``; a fill the
  delivery cursor already passed is looked up in the broker's log after the session's
  ``absorbed_cursor`` and applied, idempotent by execution id). A fill from before that
  cursor is inside a corrected position already: the order is only closed here.
- cancelled or rejected there: the row takes that status and the working copy goes.
- open there, unknown here: adopted (a durable row marked ``external`` and a working copy),
  or only flagged once when ``adopt_external_orders`` is off or the owner is ambiguous.
- open here, absent there: one query by client order id; no such order → lost.
- an open position with a stop price has its protective stop resting there; a missing one
  is re-placed (``workers.stops.sync.sync_stop``), a stop a flat position no longer needs is
  cancelled.

Every change is an event row (kind ``reconciliation``) and is counted
(``tradefleet_reconcile_corrections_total{kind}``); a pass that had every answer it asked the
broker for sets ``tradefleet_reconcile_last_success_timestamp_seconds{check="orders"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as DbSession

from models.state import Intent, OpenPosition, OrderStatus, WorkingOrder
from models.tables import OrderRow
from trading.exceptions import LockBusy, RetryLater
from trading.reconcile import (
    OPEN_ORDER_STATUSES,
    AdoptOrder,
    ApplyFills,
    BrokerOrderState,
    CloseOrder,
    FlagOrder,
    LocalOrder,
    MarkLost,
    OrderAction,
    QueryBroker,
    after_query,
    plan_orders,
    remember_flagged,
)
from workers.brokers.base import FILLS_START, AccountManager
from workers.brokers.commands import BrokerOrder, QueryOpenOrders, QueryOrder
from workers.db.order_rows import get_order_row, update_order_row
from workers.db.session_rows import get_session_row
from workers.metrics.catalog import ORDERS, RECONCILE_CORRECTIONS, RECONCILE_LAST_SUCCESS
from workers.metrics.counters import count, mark_now
from workers.orders.fills import apply_fill_to_session, deliver_fills
from workers.reconcile import context
from workers.reconcile.context import LOCK_WAIT_S, Target
from workers.risk.after_fill import release_entry
from workers.runtime import Runtime
from workers.stops.horizon import matching_horizon, until_replaced
from workers.stops.sync import is_stop_id, sync_stop

log = logging.getLogger(__name__)

LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class OrdersReport:
    """What one pass did to one session's orders: ``changes`` are ``(client order id,
    what happened)``; ``failed`` is set when the broker did not answer."""

    session_id: str
    changes: list[tuple[str, str]] = field(default_factory=list)
    in_sync: int = 0
    skipped: str = ""
    failed: str = ""

    def line(self) -> str:
        if self.skipped:
            return f"{self.session_id}: skipped: {self.skipped}"
        if self.failed:
            return f"{self.session_id}: failed: {self.failed}"
        if not self.changes:
            return f"{self.session_id}: in sync ({self.in_sync} open)"
        done = "; ".join(f"{coid} {what}" for coid, what in self.changes)
        return f"{self.session_id}: {done}"


def _work_resting(
    engine: Engine,
    broker: AccountManager,
    account: str,
    session_id: str,
    fields: Mapping[str, str],
    broker_open: list[BrokerOrder],
) -> bool:
    """Let a broker that works resting orders only when asked (the paper broker) match the
    session's and the account's unowned ones: a protective stop only on the prices the
    session has seen and never past its replacement (``workers.stops.horizon``). True if it
    was asked."""
    match_order = getattr(broker, "match_order", None)
    if not callable(match_order):
        return False
    horizon = matching_horizon(fields)
    for order in broker_open:
        if order.session_id in {session_id, ""}:
            coid = order.client_order_id
            bound = None
            if is_stop_id(coid):
                bound = until_replaced(engine, horizon, get_order_row(engine, coid))
            match_order(account, coid, bound)
    return True


def reconcile_orders(rt: Runtime, session_id: str) -> OrdersReport:
    """One pass over one session's orders (see the module)."""
    report = OrdersReport(session_id)
    target = context.target_for(rt, session_id)
    if isinstance(target, str):
        report.skipped = target
        return report
    fields = context.read_fields(rt, session_id)
    if fields is None:
        report.skipped = "no state in Redis (it needs recovery)"
        return report
    contract = context.contract_of(fields)
    broker, account = target.broker, target.account
    try:
        broker_open = broker.open_orders(QueryOpenOrders(account))
        if _work_resting(rt.engine, broker, account, session_id, fields, broker_open):
            broker_open = broker.open_orders(QueryOpenOrders(account))
    except Exception as exc:
        report.failed = context.describe(exc)
        log.warning("session %s: open orders not read: %s", session_id, report.failed)
        return report
    by_id = {order.client_order_id: order for order in broker_open}
    local = _local_orders(rt, session_id, fields)
    meta = context.meta_of(fields)
    actions = plan_orders(
        session_id,
        contract,
        list(local.values()),
        [_state(order) for order in broker_open],
        now=context.now_utc(),
        grace=timedelta(seconds=rt.settings.reconcile.grace_s),
        adopt=rt.settings.reconcile.adopt_external_orders,
        sole_owner=_sole_owner(rt, target, contract),
        flagged=meta.flagged_orders,
    )
    flagged: list[str] = []
    for planned in actions:
        action = planned
        if isinstance(planned, QueryBroker):
            try:
                answer = broker.order(QueryOrder(account, planned.client_order_id))
            except Exception as exc:
                report.failed = context.describe(exc)
                continue
            action = after_query(local[planned.client_order_id], _opt_state(answer))
        try:
            what = _carry_out(rt, target, action, by_id, meta.absorbed_cursor)
        except (RetryLater, LockBusy) as exc:
            what = f"waits ({context.describe(exc)})"
        if what is None:
            report.in_sync += 1
            continue
        if isinstance(action, FlagOrder):
            flagged.append(action.client_order_id)
        report.changes.append((action.client_order_id, what))
    if flagged:
        _remember(rt, session_id, flagged)
    if rt.settings.stops.protective and not report.failed:
        _check_stop(rt, target, report)
    if not report.failed:
        mark_now(rt.redis, RECONCILE_LAST_SUCCESS, "orders")
    return report


def mend_stop(rt: Runtime, session_id: str, lost: str, status: str) -> OrdersReport:
    """The broker ended the protective stop ``lost`` (``status``) without filling it while the
    session counted on it (a bracket acknowledged but never worked, a stop cancelled behind
    the session's back): the stop the position needs is placed again at once, with an event."""
    report = OrdersReport(session_id)
    target = context.target_for(rt, session_id)
    if isinstance(target, str):
        report.skipped = target
        return report
    report.changes.append((lost, f"protective stop {status} at the broker"))
    if rt.settings.stops.protective:
        _check_stop(rt, target, report)
    return report


def _check_stop(rt: Runtime, target: Target, report: OrdersReport) -> None:
    """The open position's protective stop rests at the broker; a missing one is re-placed
    (``workers.stops.sync``), with an event."""
    sid = target.session_id
    try:
        outcome = sync_stop(rt.store, rt.engine, target.broker, sid, target.account, verify=True)
    except (RetryLater, LockBusy) as exc:
        report.failed = context.describe(exc)
        return
    if outcome.placed is None and not outcome.cancelled:
        return
    lost = outcome.missing or next((c for c, _ in report.changes if is_stop_id(c)), None)
    if outcome.placed is not None:
        why = f"stop {lost} is gone at the broker" if lost else "the position had no stop"
        message = f"protective stop missing ({why}): placed {outcome.placed}"
        details = {"missing": lost, "placed": outcome.placed, "status": outcome.status}
        context.record(rt, sid, "warning", message, details)
        count(rt.redis, RECONCILE_CORRECTIONS, "stop_placed")
        report.changes.append((outcome.placed, f"protective stop placed ({why})"))
    for coid in outcome.cancelled:
        context.record(rt, sid, "warning", f"protective stop {coid} not needed: cancelled", {})
        count(rt.redis, RECONCILE_CORRECTIONS, "stop_cancelled")
        report.changes.append((coid, "protective stop not needed: cancelled"))


def _state(order: BrokerOrder) -> BrokerOrderState:
    return BrokerOrderState(order.client_order_id, order.status, order.session_id, order.contract)


def _opt_state(order: BrokerOrder | None) -> BrokerOrderState | None:
    return None if order is None else _state(order)


UNRECORDED = "unrecorded"
"""The status a working copy without an order row is judged with."""


def _local_orders(rt: Runtime, session_id: str, fields: dict[str, str]) -> dict[str, LocalOrder]:
    """Open working copies and open durable rows, by client order id, each with its row's
    status and wall-clock creation time (a working copy whose row is final keeps the row's
    status; one without a row counts as old and ``UNRECORDED``: no send will ever place it)."""
    rows = {row.client_order_id: row for row in context.open_rows(rt, session_id)}
    local = {coid: LocalOrder(coid, row.status, row.created_at) for coid, row in rows.items()}
    for coid, order in context.working_orders(fields).items():
        if order.status in OPEN_ORDER_STATUSES and coid not in local:
            row = get_order_row(rt.engine, coid)
            if row is None:
                local[coid] = LocalOrder(coid, UNRECORDED, LONG_AGO)
            else:
                local[coid] = LocalOrder(coid, row.status, row.created_at)
    return local


def _sole_owner(rt: Runtime, target: Target, contract: str) -> bool:
    for peer in context.account_peers(rt, target.row):
        fields = context.read_fields(rt, peer.id)
        peer_contract = peer.contract if fields is None else context.contract_of(fields)
        if peer_contract == contract:
            return False
    return True


def _carry_out(
    rt: Runtime,
    target: Target,
    action: OrderAction,
    broker_open: dict[str, BrokerOrder],
    absorbed_cursor: str,
) -> str | None:
    """Do what ``action`` says; returns what happened, or None when nothing changed."""
    sid = target.session_id
    coid = action.client_order_id
    if isinstance(action, ApplyFills):
        what = _apply_fills(rt, target, coid, absorbed_cursor)
        count(rt.redis, RECONCILE_CORRECTIONS, "missed_fills")
        return what
    if isinstance(action, CloseOrder):
        _close(rt, sid, coid, action.status)
        context.record(rt, sid, "warning", f"order {coid} is {action.status} at the broker", {})
        count(rt.redis, RECONCILE_CORRECTIONS, f"order_{action.status}")
        return f"{action.status} at the broker: closed here"
    if isinstance(action, MarkLost):
        _close(rt, sid, coid, "lost")
        context.record(
            rt, sid, "warning", f"order {coid} is unknown to the broker: marked lost", {}
        )
        count(rt.redis, RECONCILE_CORRECTIONS, "order_lost")
        return "unknown to the broker: marked lost"
    if isinstance(action, AdoptOrder):
        _adopt(rt, sid, broker_open[coid])
        count(rt.redis, RECONCILE_CORRECTIONS, "order_adopted")
        return "open at the broker, unknown here: adopted as external"
    if isinstance(action, FlagOrder):
        context.record(rt, sid, "warning", f"external order {coid}: {action.reason}", {})
        count(rt.redis, RECONCILE_CORRECTIONS, "order_flagged")
        return f"flagged: {action.reason}"
    return None


def _still_open(rt: Runtime, session_id: str, coid: str) -> bool:
    row = get_order_row(rt.engine, coid)
    if row is not None and row.status in OPEN_ORDER_STATUSES:
        return True
    fields = context.read_fields(rt, session_id)
    return fields is not None and coid in context.working_orders(fields)


def _apply_fills(rt: Runtime, target: Target, coid: str, absorbed_cursor: str) -> str:
    sid, broker, account = target.session_id, target.broker, target.account
    deliver_fills(
        rt.redis, rt.store, rt.engine, broker, account, rt.settings.risk, rt.settings.stops
    )
    if not _still_open(rt, sid, coid):
        context.record(rt, sid, "warning", f"order {coid} filled at the broker: fills applied", {})
        return "filled at the broker: fills applied"
    applied = 0
    cursor = absorbed_cursor or FILLS_START
    while True:
        fills, cursor_after = broker.fills_since(account, cursor)
        if not fills:
            break
        for fill in fills:
            if fill.client_order_id == coid:
                applied += apply_fill_to_session(
                    rt.store,
                    rt.engine,
                    broker,
                    replace(fill, session_id=sid),
                    rt.settings.risk,
                    rt.settings.stops,
                )
        cursor = cursor_after
    if _still_open(rt, sid, coid):
        _close(rt, sid, coid, "filled")
        message = f"order {coid} filled at the broker before the last correction: closed here"
        context.record(rt, sid, "warning", message, {"absorbed_cursor": absorbed_cursor})
        return "filled at the broker, already inside the corrected position: closed here"
    context.record(
        rt,
        sid,
        "warning",
        f"order {coid} filled at the broker: {applied} missed fill(s) applied",
        {},
    )
    return f"filled at the broker: {applied} missed fill(s) applied"


def _close(rt: Runtime, session_id: str, coid: str, status: OrderStatus) -> None:
    """The row takes ``status``; the working copy leaves the session's state."""
    update_order_row(rt.engine, coid, status, metrics=rt.redis)
    with rt.store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
        orders = context.working_orders(lease.fields)
        if coid in orders:
            remaining = {k: v for k, v in orders.items() if k != coid}
            meta = context.meta_of(lease.fields)
            context.write(rt, lease, meta, {"orders": remaining})
            if status != "filled" and orders[coid].intent == "entry":
                _release(rt, session_id, context.held_position(lease.fields), remaining)


def _release(
    rt: Runtime, session_id: str, position: OpenPosition, remaining: dict[str, WorkingOrder]
) -> None:
    """A dead entry gives its reservation on the account's risk book back."""
    row = get_session_row(rt.engine, session_id)
    if row is not None:
        release_entry(rt.redis, row.account, session_id, position, remaining, rt.settings.risk)


def _adopt(rt: Runtime, session_id: str, order: BrokerOrder) -> None:
    """A durable row marked external, then a working copy in the session's state."""
    with rt.store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
        held = context.held_position(lease.fields).quantity
        signed = order.quantity if order.side == "buy" else -order.quantity
        intent: Intent = "exit" if held != 0 and abs(held + signed) < abs(held) else "entry"
        working = WorkingOrder(
            client_order_id=order.client_order_id,
            contract=order.contract,
            side=order.side,
            quantity=order.quantity,
            order_type=order.order_type,
            intent=intent,
            status="working",
            created_at=order.decided_at,
            filled_quantity=order.filled_quantity,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            broker_order_id=order.broker_order_id,
        )
        _insert_external_row(rt, session_id, order, intent)
        orders = {**context.working_orders(lease.fields), order.client_order_id: working}
        context.write(rt, lease, context.meta_of(lease.fields), {"orders": orders})
    details = {
        "broker_order_id": order.broker_order_id,
        "side": order.side,
        "quantity": order.quantity,
        "order_type": order.order_type,
        "named_session": order.session_id,
    }
    context.record(
        rt, session_id, "warning", f"external order {order.client_order_id} adopted", details
    )


def _insert_external_row(rt: Runtime, session_id: str, order: BrokerOrder, intent: Intent) -> None:
    """The adopted order's row (counted ``external``), unless it has one."""
    if get_order_row(rt.engine, order.client_order_id) is not None:
        return
    with DbSession(rt.engine) as db, db.begin():
        db.add(
            OrderRow(
                client_order_id=order.client_order_id,
                broker_order_id=order.broker_order_id,
                session_id=session_id,
                contract=order.contract,
                side=order.side,
                quantity=order.quantity,
                order_type=order.order_type,
                limit_price=order.limit_price,
                stop_price=order.stop_price,
                time_in_force=order.time_in_force,
                status="working",
                intent=intent,
                decided_at=order.decided_at,
                external=True,
            )
        )
    count(rt.redis, ORDERS, "external")


def _remember(rt: Runtime, session_id: str, ids: list[str]) -> None:
    with rt.store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
        meta = remember_flagged(context.meta_of(lease.fields), ids)
        context.write(rt, lease, meta)
