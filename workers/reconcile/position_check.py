"""One session's position against the broker's, under the session's lock.

1. The account's logged fills are delivered first (``workers.orders.fills.deliver_fills``), so the
   session's own fills are in before anything is compared.
2. Under the lock: the broker's fill log after the delivery cursor is read to its end (fills
   in the contract there are not delivered yet), then the position, then the log again past
   that end (a fill booked while the position was read). Any such fill means "check again",
   never "correct": a correction therefore never absorbs a fill that will still be applied,
   and the log's end at the correction is kept (``absorbed_cursor``) so that nothing before it
   is ever applied to the session again (``workers.reconcile.order_check``).
3. ``trading.reconcile.decide_position`` decides; a correction sets the quantity (and the
   broker's average price and cash) and records an event.

A broker that fails is never read as flat: the session is only marked stale, and after
``reconcile_max_failures`` consecutive failures it stops entering (the tick path reads
``_reconcile``) until the broker answers again.

A pass that got the broker's answer sets
``tradefleet_reconcile_last_success_timestamp_seconds{check="positions"}``; a correction is
counted (``tradefleet_reconcile_corrections_total{kind="position"}``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from models.codec import decode_field
from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from models.state import OpenPosition
from trading.exceptions import LockBusy, RetryLater, ServiceUnavailable
from trading.market import Candle
from trading.reconcile import (
    Ambiguous,
    BrokerPosition,
    CorrectTo,
    InSync,
    LocalPosition,
    PositionDecision,
    RecheckLater,
    ReconcileMeta,
    after_answer,
    after_failure,
    corrected_average,
    decide_position,
)
from workers.brokers.base import FILLS_START, AccountManager
from workers.brokers.commands import QueryBalance, QueryPositions
from workers.metrics.catalog import RECONCILE_CORRECTIONS, RECONCILE_LAST_SUCCESS
from workers.metrics.counters import count, mark_now
from workers.orders.fills import deliver_fills, fills_cursor_key
from workers.reconcile import context
from workers.reconcile.context import LOCK_WAIT_S, Target
from workers.runtime import Runtime
from workers.state.broker_seen import record_broker_seen
from workers.state.store import Lease

log = logging.getLogger(__name__)

Outcome = Literal["in_sync", "corrected", "recheck", "failed", "ambiguous", "skipped"]


@dataclass(frozen=True, slots=True)
class PositionReport:
    """What one pass did to one session."""

    session_id: str
    outcome: Outcome
    message: str
    local: int | None = None
    broker: int | None = None

    def line(self) -> str:
        texts = {
            "in_sync": f"in sync ({self.local})",
            "corrected": f"corrected from {self.local} to {self.broker}",
            "recheck": f"re-check: {self.message}",
            "failed": f"failed: {self.message}",
            "ambiguous": f"ambiguous: {self.message}",
            "skipped": f"skipped: {self.message}",
        }
        return f"{self.session_id}: {texts[self.outcome]}"


@dataclass(frozen=True, slots=True)
class _Answer:
    position: BrokerPosition
    log_end: str


def reconcile_positions(rt: Runtime, session_id: str) -> PositionReport:
    """One pass over one session (see the module)."""
    target = context.target_for(rt, session_id)
    if isinstance(target, str):
        return PositionReport(session_id, "skipped", target)
    error: str | None = None
    undelivered = ""
    try:
        deliver_fills(
            rt.redis,
            rt.store,
            rt.engine,
            target.broker,
            target.account,
            rt.settings.risk,
            rt.settings.stops,
        )
    except ServiceUnavailable as exc:
        error = context.describe(exc)
    except RetryLater as exc:
        undelivered = context.describe(exc)
    except Exception as exc:
        error = context.describe(exc)
    try:
        with rt.store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
            if error is not None:
                return _failed(rt, target, lease, error)
            return _compare(rt, target, lease, undelivered)
    except LockBusy:
        return PositionReport(session_id, "recheck", "the session is busy")


def _failed(rt: Runtime, target: Target, lease: Lease, error: str) -> PositionReport:
    meta = context.meta_of(lease.fields)
    step = after_failure(meta, error, rt.settings.reconcile.max_failures)
    context.write(rt, lease, step.meta)
    sid = target.session_id
    details = {"failures": step.meta.failures, "error": error}
    if step.first:
        context.record(rt, sid, "warning", "broker did not answer; position left as is", details)
    else:
        log.warning("session %s: broker did not answer (%s failures): %s", sid, details, error)
    if step.blocked_now:
        context.record(
            rt,
            sid,
            "error",
            f"entries blocked after {step.meta.failures} consecutive broker failures",
            details,
        )
    return PositionReport(sid, "failed", f"{error} ({step.meta.failures} in a row)")


def _query(broker: AccountManager, account: str, contract: str, cursor: str) -> _Answer:
    """The broker's position in ``contract``, and its fills there not yet delivered."""
    pending = 0
    end = cursor
    while True:
        fills, after = broker.fills_since(account, end)
        if not fills:
            break
        pending += sum(1 for fill in fills if fill.contract == contract)
        end = after
    quantity = broker.positions(QueryPositions(account)).get(contract, 0)
    averages = getattr(broker, "average_prices", None)
    average: Decimal | None = None
    if callable(averages) and quantity != 0:
        average = averages(QueryPositions(account)).get(contract)
    late, _ = broker.fills_since(account, end)
    pending += sum(1 for fill in late if fill.contract == contract)
    return _Answer(BrokerPosition(quantity, average, pending), end)


def _group(
    rt: Runtime, target: Target, fields: dict[str, str], contract: str
) -> list[LocalPosition] | str:
    """This session and every other active one on its account and contract, or why the
    comparison cannot be made now."""
    group = [context.local_position(rt, target.session_id, fields)]
    for peer in context.account_peers(rt, target.row):
        peer_fields = context.read_fields(rt, peer.id)
        if peer_fields is None:
            if peer.contract == contract:
                return f"session {peer.id} on the same account has no state"
            continue
        if context.contract_of(peer_fields) == contract:
            group.append(context.local_position(rt, peer.id, peer_fields))
    return group


def _compare(rt: Runtime, target: Target, lease: Lease, undelivered: str) -> PositionReport:
    sid, account = target.session_id, target.account
    fields = dict(lease.fields)
    meta = context.meta_of(fields)
    contract = context.contract_of(fields)
    raw_cursor = rt.redis.get(fills_cursor_key(account))
    cursor = raw_cursor.decode() if isinstance(raw_cursor, bytes) else FILLS_START
    try:
        answer = _query(target.broker, account, contract, cursor)
    except Exception as exc:
        return _failed(rt, target, lease, context.describe(exc))
    now = context.now_utc()
    record_broker_seen(rt.redis, account, contract, answer.position, now)
    mark_now(rt.redis, RECONCILE_LAST_SUCCESS, "positions")
    answered = after_answer(meta, now)
    if answered.recovered:
        message = "broker answers again" + ("; entries allowed" if answered.unblocked else "")
        context.record(rt, sid, "info", message, {"after_failures": meta.failures})
    group = _group(rt, target, fields, contract)
    grace = timedelta(seconds=rt.settings.reconcile.grace_s)
    decision: PositionDecision
    if isinstance(group, str):
        decision = RecheckLater(group)
    else:
        broker = answer.position
        if undelivered:
            broker = replace(broker, fills_pending=broker.fills_pending + 1)
        decision = decide_position(sid, group, broker, now, grace)
    new_meta = replace(answered.meta, ambiguous=isinstance(decision, Ambiguous))
    if isinstance(decision, CorrectTo):
        return _correct(rt, target, lease, decision, answer, new_meta, now)
    context.write(rt, lease, new_meta)
    if isinstance(decision, InSync):
        return PositionReport(sid, "in_sync", "", decision.local, answer.position.quantity)
    if isinstance(decision, RecheckLater):
        log.info("session %s: position re-checked later: %s", sid, decision.reason)
        return PositionReport(sid, "recheck", decision.reason)
    details = {
        "local_total": decision.local_total,
        "broker": decision.broker,
        "sessions": list(decision.sessions),
        "contract": contract,
    }
    if not meta.ambiguous:
        context.record(rt, sid, "error", "positions ambiguous: " + decision.reason, details)
    else:
        log.error("session %s: positions still ambiguous: %s", sid, decision.reason)
    return PositionReport(sid, "ambiguous", decision.reason, decision.local_total, decision.broker)


def _correct(
    rt: Runtime,
    target: Target,
    lease: Lease,
    decision: CorrectTo,
    answer: _Answer,
    meta: ReconcileMeta,
    now: datetime,
) -> PositionReport:
    sid = target.session_id
    fields = lease.fields
    held = context.held_position(fields)
    contract = context.contract_of(fields)
    partial: Candle | None = decode_field("latest_partial_candle", fields["latest_partial_candle"])
    average = corrected_average(
        decision.local,
        held.average_price if held.contract == contract else None,
        decision.broker,
        decision.average_price,
        None if partial is None else partial.close,
    )
    flat = decision.broker == 0
    same_side = decision.local != 0 and (decision.local > 0) == (decision.broker > 0)
    position = OpenPosition(
        contract=contract,
        quantity=decision.broker,
        average_price=average,
        stop_price=held.stop_price if same_side and not flat else None,
        opened_at=None if flat else (held.opened_at if same_side else now),
    )
    values: dict[str, object] = {"open_position": position}
    try:
        values["account_balance"] = target.broker.balance(QueryBalance(target.account)).cash
    except Exception as exc:
        log.warning("session %s: balance not refreshed: %s", sid, context.describe(exc))
    absorbed = replace(meta, absorbed_cursor=answer.log_end)
    context.write(rt, lease, absorbed, values, _stop_out_settled(fields))
    details = {
        "local": decision.local,
        "broker": decision.broker,
        "reason": decision.reason,
        "contract": contract,
        "average_price": None if average is None else str(average),
    }
    context.record(
        rt,
        sid,
        "warning",
        f"position corrected from {decision.local} to {decision.broker}",
        details,
    )
    count(rt.redis, RECONCILE_CORRECTIONS, "position")
    return PositionReport(sid, "corrected", decision.reason, decision.local, decision.broker)


def _stop_out_settled(fields: Mapping[str, str]) -> dict[str, str]:
    """The broker's position is the truth: what the tick step took as closed by a touched
    protective stop (``trading.stops``) is settled by the correction."""
    raw = fields.get(PROGRESS_FIELD)
    progress = TickProgress.from_json(raw)
    if not raw or not progress.stops_out:
        return {}
    return {PROGRESS_FIELD: replace(progress, stops_out=()).to_json()}
