"""Rebuilding one session whose Redis state is missing, from SQL and the broker.

Read, plan, build, write: this module reads (SQL, the broker, the stream: ``sources``), plans
with the pure ``trading.recovery`` (signal sequence, re-warmed candles, the position and its
stop price), builds the stored values with ``rebuild`` and writes the state in one step.

- configuration: the ``trading_sessions`` row (the contract of its last finished roll);
- open orders: the order rows that are not final, each checked at the broker (final there:
  the row takes that status; working there: the broker's fill progress);
- trades: the recorded fills (the last ``max_trades``, oldest first), after recording the
  session's fills the broker logged while it had no state;
- strategy state, signal sequence, closed-candle count: the last snapshot; the sequence also
  continues past every client order id the session ever used;
- position (with the broker's average price), balance: the broker. When other active sessions
  share the account and contract, the session's own fills give its share instead;
- protective stops: first worked at the broker on the ticks up to the rebuilt cursor (the
  session met those without state and never processes them: a stop touched meanwhile has
  filled before the position is read, ``sources.settle_stops``); the position keeps the price
  of the stop still open for it (``trading.recovery.stop_price_for``), so the rebuilt session
  watches that stop in data time like any other; once the state exists, the broker is made to
  hold the stop the position needs and its poll chain runs (``workers.stops.sync.sync_stop``;
  the chain's guard may have gone with the state);
- rolling: set while a roll of the session is unfinished (its chain resumes the roll);
- candles: re-warmed by folding the instrument stream up to its end WITHOUT running the
  strategy; the session's cursor starts at that end. Unless the stream went with the state
  (Redis restarted empty: it holds nothing) and the snapshot can be resumed: then the session
  is rebuilt as it was at its snapshot (cursor, tick counters, partial candle, its position's
  stop; closed candles from the source's history before that partial candle; the orders it
  decided after the snapshot left to be decided again, with the same ids), and the feed
  publishes the stream again from there (``_resume_at_snapshot``);
- the account's risk levels and halted flag: its ``accounts`` row, written into the account's
  risk hash where that lacks them (``restore_account``; a halted account stays halted).

The state is written with ``StateStore.create`` together with its meta fields (``_cursor``,
``_progress``, ``_reconcile`` whose ``absorbed_cursor`` is the broker's fill-log end, so no
earlier fill is applied again), in one atomic step: a tick step never sees the session without
its cursor. The fence counter survives a loss of the state on purpose (``create`` keeps it), so
a worker holding a lease from before the loss stays refused; when the counter was lost too it
restarts from the clock in microseconds, above any fence handed out before. Two recoveries
never run at once (``tf:recovery:{<sid>}:lock``) and the create refuses a session that exists:
recovering twice rebuilds once. Fills the broker logs after it was read are applied once the
state exists again (idempotent by execution id).

A broker that does not answer fails the recovery (retried later); it is never read as flat.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from models.codec import decode_field, fence_key
from models.meta import CURSOR_FIELD, PROGRESS_FIELD, RECONCILE_FIELD
from models.progress import TickProgress
from models.state import OpenPosition, WorkingOrder
from models.tables import TradingSessionRow
from trading import recovery
from trading.exceptions import SessionExists, UnknownSession
from trading.market import Candle
from trading.reconcile import ReconcileMeta
from trading.timeframes import Timeframe, parse_timeframe
from workers.brokers.base import FILLS_START
from workers.db.event_rows import record_event
from workers.db.session_rows import get_session_row
from workers.dispatch.recovery import lock_key, queued_key
from workers.orders.fills import apply_fill_to_session, fills_cursor_key
from workers.orders.send import session_broker
from workers.recovery import rebuild, sources
from workers.risk.accounts import restore_account
from workers.risk.book import RiskBook
from workers.runtime import Runtime
from workers.state import scripts as store_scripts
from workers.stops.sync import sync_stop
from workers.ticks.snapshots import PARTIAL_FIELD, StrategySnapshot, load_snapshot
from workers.ticks.subscriptions import subscribe_at

log = logging.getLogger(__name__)

LOCK_TTL_MS = 120_000
Outcome = Literal["recovered", "present", "busy", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What one recovery did to one session."""

    session_id: str
    outcome: Outcome
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.session_id}: {self.outcome}: {self.message}"


def recover_session(
    rt: Runtime, session_id: str, wake: Callable[[], object] | None = None
) -> RecoveryReport:
    """Rebuild ``session_id`` if its state is missing (see the module); ``UnknownSession`` if
    SQL has no such session. ``wake`` starts drain tasks once the session is ready again."""
    row = get_session_row(rt.engine, session_id)
    if row is None:
        raise UnknownSession(session_id)
    if row.status != "active":
        return RecoveryReport(session_id, "skipped", f"session is {row.status}")
    if rt.store.exists(session_id):
        return RecoveryReport(session_id, "present", "state present; nothing to do")
    token = secrets.token_hex(16)
    if not rt.redis.set(lock_key(session_id), token, nx=True, px=LOCK_TTL_MS):
        return RecoveryReport(session_id, "busy", "another recovery of it is running")
    try:
        if rt.store.exists(session_id):
            return RecoveryReport(session_id, "present", "state present; nothing to do")
        report = _rebuild(rt, row)
    finally:
        release = rt.redis.register_script(store_scripts.RELEASE)
        release(keys=[lock_key(session_id)], args=[token])
    if report.outcome == "recovered":
        rt.redis.delete(queued_key(session_id))
        if wake is not None:
            wake()
    return report


def _rebuild(rt: Runtime, row: TradingSessionRow) -> RecoveryReport:
    sid, account = row.id, row.account
    engine = rt.engine
    now = datetime.now(UTC)
    definition = sources.definition_of(row)
    contract = sources.current_contract(engine, row)
    timeframe = parse_timeframe(row.timeframe)
    snapshot = load_snapshot(engine, sid)
    records = sources.open_order_records(engine, sid)
    end = sources.stream_end(rt.redis, contract)
    need = max(definition.warmup_periods, 1) + 1
    resumed = _resume_at_snapshot(rt, definition, contract, timeframe, need, snapshot, end)
    if resumed is not None and snapshot is not None:
        warmed, end = resumed
        # Orders decided after the snapshot (their step's state write went with Redis): the
        # session decides them again, with the same ids, on the entries published again.
        later = recovery.decided_after(
            sid, [r.client_order_id for r in records], snapshot.signal_seq
        )
        records = [r for r in records if r.client_order_id not in later]
    else:
        warmed = _rewarm_to_end(rt, definition, contract, timeframe, need, snapshot, end)
    broker = session_broker(rt, row)
    try:
        stops_closed = sources.settle_stops(broker, engine, rt.redis, account, sid, end, records)
        view = sources.read_broker(
            broker,
            account,
            contract,
            sid,
            [record.client_order_id for record in records],
        )
    except Exception as exc:
        reason = str(exc).split("\n")[0]
        log.warning("session %s: recovery waits for the broker: %s", sid, reason)
        return RecoveryReport(sid, "failed", f"broker did not answer: {reason}")
    added = sources.record_broker_fills(engine, rt.redis, view.session_fills)
    closed = sources.close_final_orders(engine, rt.redis, records, view.orders)
    orders: dict[str, WorkingOrder] = {}
    for record in records:
        copy = rebuild.working_copy(record, view.orders.get(record.client_order_id))
        if copy is not None:
            orders[record.client_order_id] = copy
    replay = rebuild.replay_fills(
        sources.recorded_fills(engine, sid), contract, definition.spec.multiplier
    )
    position = recovery.rebuilt_position(
        contract,
        (view.quantity, view.average_price),
        (replay.quantity, replay.average_price),
        sources.sole_owner(engine, row, contract),
        replay.trades[-1].time if replay.trades else None,
        None if warmed.partial is None else warmed.partial.close,
        sources.open_stops(engine, sid, orders),
    )
    if resumed is not None and snapshot is not None:
        position = _as_at_snapshot(position, snapshot)
        seq = snapshot.signal_seq
    else:
        seq = recovery.signal_seq_after(
            sid,
            sources.client_order_ids(engine, sid),
            0 if snapshot is None else snapshot.signal_seq,
        )
    state = rebuild.build_state(
        definition,
        contract,
        timeframe,
        definition.strategy_initial_state if snapshot is None else snapshot.strategy_state,
        position,
        orders,
        replay,
        view.balance,
        warmed,
        rt.store.max_trades,
        rolling=sources.roll_unfinished(engine, sid),
    )
    if resumed is not None and snapshot is not None:
        progress = TickProgress(
            last_ms=snapshot.last_ms,
            signal_seq=seq,
            candles_closed=snapshot.candles_closed,
            ticks_processed=warmed.ticks,
            rejected=dict(warmed.rejected),
        )
    else:
        progress = rebuild.progress_after(
            warmed,
            timeframe,
            seq,
            None if snapshot is None else snapshot.candles_closed,
            None if snapshot is None else snapshot.last_ms,
        )
    meta = {
        CURSOR_FIELD: end,
        PROGRESS_FIELD: progress.to_json(),
        RECONCILE_FIELD: ReconcileMeta(last_ok=now, absorbed_cursor=view.log_end).to_json(),
    }
    rt.redis.set(fence_key(sid), time.time_ns() // 1_000, nx=True)
    try:
        rt.store.create(state, meta)
    except SessionExists:
        return RecoveryReport(sid, "present", "state present; rebuilt by another recovery")
    subscribe_at(rt.redis, sid, contract, end)
    _restore_account(rt, account)
    late = _apply_late_fills(rt, row, view.log_end)
    if view.log_end != FILLS_START:
        rt.redis.set(fills_cursor_key(account), view.log_end, nx=True)
    resting = _sync_stop(rt, row)
    details: dict[str, Any] = {
        "position": position.quantity,
        "average_price": None if position.average_price is None else str(position.average_price),
        "contract": contract,
        "orders": sorted(orders),
        "orders_closed": closed,
        "stops_closed": stops_closed,
        "stop_price": None if position.stop_price is None else str(position.stop_price),
        "stop_resting": resting,
        "balance": str(view.balance),
        "snapshot_age_s": _age(snapshot, now),
        "signal_seq": seq,
        "candles": len(warmed.closed),
        "cursor": end,
        "absorbed_cursor": view.log_end,
        "fills_recorded": added,
        "late_fills_applied": late,
        "rolling": state.rolling,
        "resumed_at_snapshot": resumed is not None,
    }
    message = (
        f"state rebuilt: position {position.quantity} in {contract}, {len(orders)} open "
        f"order(s), balance {view.balance}, {len(warmed.closed)} candles re-warmed"
    )
    log.warning("session %s: %s %s", sid, message, details)
    record_event(engine, sid, "recovery", "warning", message, details)
    return RecoveryReport(sid, "recovered", message + _age_text(snapshot, now), details)


def _rewarm_to_end(
    rt: Runtime,
    definition: rebuild.Definition,
    contract: str,
    timeframe: Timeframe,
    need: int,
    snapshot: StrategySnapshot | None,
    end: str,
) -> recovery.Rewarmed:
    """Candles folded from the stream up to its ``end`` (topped up from the source's history
    when it holds too few), the strategy not run on them: the session starts at ``end``."""
    settings = rt.settings
    since = None if snapshot is None else snapshot.cursor
    entries = sources.read_history(
        rt.redis, contract, end, timeframe, need, since, settings.state.max_candles
    )
    warmed = recovery.rewarm(contract, entries, timeframe)
    if len(warmed.closed) < need:
        entries = sources.top_up_history(
            settings,
            definition.market_data_source,
            contract,
            timeframe,
            need,
            entries,
            None if snapshot is None else snapshot.last_ms,
        )
        warmed = recovery.rewarm(contract, entries, timeframe)
    return warmed


def _resume_at_snapshot(
    rt: Runtime,
    definition: rebuild.Definition,
    contract: str,
    timeframe: Timeframe,
    need: int,
    snapshot: StrategySnapshot | None,
    end: str,
) -> tuple[recovery.Rewarmed, str] | None:
    """When the stream went with the state (Redis restarted empty: the stream holds nothing,
    its ``end`` is ``0-0``) and the snapshot holds the tick counters and the partial candle:
    the session as it was at the snapshot, and its cursor. Its closed candles
    come from the source's history before the snapshot's candle in progress; the partial
    candle and the counters from the snapshot. The feed publishes the stream again from the
    oldest such cursor (``workers.ticks.snapshots.resume_point``), so the session processes
    every tick after its snapshot, the strategy running on each candle it closes, as if
    nothing had happened. None otherwise (a stream that holds entries again was published to
    by a feed that does not publish again what was lost): the session starts at the stream's
    end."""
    if snapshot is None or not snapshot.resumable or end != "0-0":
        return None
    partial = decode_field(PARTIAL_FIELD, json.dumps(snapshot.partial_candle))
    if not isinstance(partial, Candle):
        return None
    entries = sources.history_before(
        rt.settings, definition.market_data_source, contract, timeframe, need, partial.start
    )
    folded = recovery.rewarm(contract, entries, timeframe)
    closed = folded.closed + (() if folded.partial is None else (folded.partial,))
    warmed = recovery.Rewarmed(
        closed=closed[-rt.settings.state.max_candles :],
        partial=partial,
        last_ms=snapshot.last_ms,
        ticks=snapshot.ticks_processed or 0,
        rejected=dict(snapshot.rejected or {}),
    )
    return warmed, snapshot.cursor


def _as_at_snapshot(position: recovery.Position, snapshot: StrategySnapshot) -> recovery.Position:
    """The broker's position with the protective stop price and opening time the session held
    at its snapshot, when the snapshot held that same position: those are the session's own
    (a stop it trails, with protective stops off one only it watches), not the broker's."""
    if snapshot.open_position is None:
        return position
    held = decode_field("open_position", json.dumps(snapshot.open_position))
    if not isinstance(held, OpenPosition) or held.quantity != position.quantity:
        return position
    return replace(position, opened_at=held.opened_at, stop_price=held.stop_price)


def _apply_late_fills(rt: Runtime, row: TradingSessionRow, log_end: str) -> int:
    """Fills of the session logged after the broker was read: a delivery that ran before the
    state existed again skipped them. Applied now (idempotent by execution id)."""
    broker = session_broker(rt, row)
    applied = 0
    try:
        late, _ = sources.read_log(broker, row.account, log_end)
        for fill in late:
            if fill.session_id == row.id and apply_fill_to_session(
                rt.store, rt.engine, broker, fill, rt.settings.risk, rt.settings.stops
            ):
                applied += 1
    except Exception as exc:
        log.warning("session %s: late fills left to reconciliation: %s", row.id, exc)
    return applied


def _sync_stop(rt: Runtime, row: TradingSessionRow) -> str | None:
    """With protective stops on: the broker holds the stop the rebuilt position needs, and its
    poll chain runs (``workers.stops.sync``); the id of the stop resting, if any. A failure is
    left to the next fill and to order reconciliation, as after any fill."""
    if not rt.settings.stops.protective:
        return None
    try:
        outcome = sync_stop(rt.store, rt.engine, session_broker(rt, row), row.id, row.account)
    except Exception as exc:
        log.warning("session %s: protective stop not synced after recovery: %s", row.id, exc)
        return None
    return outcome.resting


def _restore_account(rt: Runtime, account: str) -> None:
    """The account's risk levels and halted flag, if its risk hash went with the state."""
    try:
        restore_account(rt.engine, RiskBook(rt.redis, rt.settings.risk), account)
    except Exception as exc:
        log.warning("account %s: risk levels not restored: %s", account, exc)


def _age(snapshot: StrategySnapshot | None, now: datetime) -> float | None:
    return None if snapshot is None else round((now - snapshot.taken_at).total_seconds(), 3)


def _age_text(snapshot: StrategySnapshot | None, now: datetime) -> str:
    age = _age(snapshot, now)
    return ", no snapshot" if age is None else f", snapshot {age:.1f}s old"
