"""Strategy-state snapshots: one SQL row per session, upserted after tick steps that closed
candles (once per step, however many candles it closed), read back by recovery.

A snapshot is taken from what the step's fenced write has just stored: the strategy's state,
the signal sequence, closed-candle count, good ticks processed and rejects (``_progress``), the
last tick's data time, the partial candle and the stream cursor: everything a session needs to
resume exactly at that cursor when its Redis and the instrument's stream were lost together
(the feed publishes again from the oldest cursor of its sessions: ``resume_point``). The upsert
never moves a snapshot backwards (a slower writer holding an older step's snapshot loses to the
newer one already stored).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Engine, Table, TextClause, bindparam, func, select, text
from sqlalchemy.orm import Session

from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from models.tables import OrderRow, StrategySnapshotRow, TradingSessionRow
from trading.market import epoch_ms
from trading.reconcile import OPEN_ORDER_STATUSES
from workers.ticks.step import StepResult, progress_of

log = logging.getLogger(__name__)

PARTIAL_FIELD = "latest_partial_candle"


@dataclass(frozen=True, slots=True)
class StrategySnapshot:
    """What recovery needs of a session's tick path that SQL does not hold otherwise."""

    session_id: str
    strategy_state: dict[str, Any]
    signal_seq: int
    candles_closed: int
    last_ms: int | None
    cursor: str
    taken_at: datetime
    ticks_processed: int | None = None
    """None in a snapshot older than these counters (it cannot be resumed at its cursor)."""
    rejected: dict[str, int] | None = None
    partial_candle: dict[str, Any] | None = None
    """The candle in progress at ``cursor`` as its stored JSON (``models.codec``)."""
    open_position: dict[str, Any] | None = None
    """The open position at ``cursor`` as its stored JSON."""

    @property
    def resumable(self) -> bool:
        """Whether the session can resume exactly at ``cursor`` from this snapshot alone (its
        counters and partial candle were recorded, and it had read some stream)."""
        return (
            self.ticks_processed is not None
            and self.partial_candle is not None
            and self.cursor != "0-0"
        )

    @classmethod
    def of_progress(
        cls,
        session_id: str,
        strategy_state: dict[str, Any],
        progress: TickProgress,
        cursor: str,
        now: datetime,
        partial_candle: dict[str, Any] | None = None,
        open_position: dict[str, Any] | None = None,
    ) -> StrategySnapshot:
        """The snapshot of a strategy state and the tick counters stored with it."""
        return cls(
            session_id=session_id,
            strategy_state=strategy_state,
            signal_seq=progress.signal_seq,
            candles_closed=progress.candles_closed,
            last_ms=progress.last_ms,
            cursor=cursor,
            taken_at=now,
            ticks_processed=progress.ticks_processed,
            rejected=dict(progress.rejected),
            partial_candle=partial_candle,
            open_position=open_position,
        )

    def as_row(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "strategy_state": self.strategy_state,
            "signal_seq": self.signal_seq,
            "candles_closed": self.candles_closed,
            "last_ms": self.last_ms,
            "cursor": self.cursor,
            "taken_at": self.taken_at,
            "ticks_processed": self.ticks_processed,
            "rejected": self.rejected,
            "partial_candle": self.partial_candle,
            "open_position": self.open_position,
        }


def snapshot_of(
    session_id: str,
    fields: Mapping[str, str],
    result: StepResult,
    cursor: str,
    now: datetime,
) -> StrategySnapshot | None:
    """The snapshot after a step, or None when the step closed no candle.

    ``fields``: the state hash as read when the step began; ``result``: what the step wrote.
    """
    if not result.candles:
        return None
    strategy_raw = result.fields.get("strategy", fields["strategy"])
    progress = progress_of(
        session_id, result.fields.get(PROGRESS_FIELD, fields.get(PROGRESS_FIELD))
    )
    state = json.loads(strategy_raw).get("state", {})
    partial_raw = result.fields.get(PARTIAL_FIELD, fields.get(PARTIAL_FIELD))
    partial = json.loads(partial_raw) if partial_raw else None
    position_raw = result.fields.get("open_position", fields.get("open_position"))
    position = json.loads(position_raw) if position_raw else None
    return StrategySnapshot.of_progress(
        session_id,
        state if isinstance(state, dict) else {},
        progress,
        cursor,
        now,
        partial if isinstance(partial, dict) else None,
        position if isinstance(position, dict) else None,
    )


def save_snapshots(engine: Engine, snapshots: Sequence[StrategySnapshot]) -> None:
    """Upsert ``snapshots`` in one statement; an older snapshot never replaces a newer one."""
    if not snapshots:
        return
    if engine.dialect.name not in {"postgresql", "sqlite"}:
        raise NotImplementedError(f"snapshots are not written on {engine.dialect.name}")
    newest: dict[str, StrategySnapshot] = {}
    for snap in snapshots:
        kept = newest.get(snap.session_id)
        if kept is None or kept.candles_closed <= snap.candles_closed:
            newest[snap.session_id] = snap
    with engine.begin() as connection:
        connection.execute(_upsert(), [snap.as_row() for snap in newest.values()])


_UPSERT = """
INSERT INTO strategy_snapshots
    (session_id, strategy_state, signal_seq, candles_closed, last_ms, cursor, taken_at,
     ticks_processed, rejected, partial_candle, open_position)
VALUES
    (:session_id, :strategy_state, :signal_seq, :candles_closed, :last_ms, :cursor, :taken_at,
     :ticks_processed, :rejected, :partial_candle, :open_position)
ON CONFLICT (session_id) DO UPDATE SET
    strategy_state = excluded.strategy_state,
    signal_seq = excluded.signal_seq,
    candles_closed = excluded.candles_closed,
    last_ms = excluded.last_ms,
    cursor = excluded.cursor,
    taken_at = excluded.taken_at,
    ticks_processed = excluded.ticks_processed,
    rejected = excluded.rejected,
    partial_candle = excluded.partial_candle,
    open_position = excluded.open_position
WHERE strategy_snapshots.candles_closed <= excluded.candles_closed
"""


@cache
def _upsert() -> TextClause:
    """The upsert (the same words on PostgreSQL and SQLite), its values bound with the
    columns' own types.

    A text statement is compiled once per process: SQLAlchemy gives an insert's
    ``on_conflict_do_update`` no cache key, so that construct is compiled again on every call,
    and a drain round that closes candles writes its snapshots on the tick path."""
    table = cast(Table, StrategySnapshotRow.__table__)
    return text(_UPSERT).bindparams(*(bindparam(c.name, type_=c.type) for c in table.columns))


def load_snapshot(engine: Engine, session_id: str) -> StrategySnapshot | None:
    """The session's last snapshot, or None if it never closed a candle."""
    with Session(engine) as db:
        row = db.scalar(
            select(StrategySnapshotRow).where(StrategySnapshotRow.session_id == session_id)
        )
        if row is None:
            return None
        return StrategySnapshot(
            session_id=row.session_id,
            strategy_state=dict(row.strategy_state),
            signal_seq=row.signal_seq,
            candles_closed=row.candles_closed,
            last_ms=row.last_ms,
            cursor=row.cursor,
            taken_at=row.taken_at,
            ticks_processed=row.ticks_processed,
            rejected=None if row.rejected is None else dict(row.rejected),
            partial_candle=None if row.partial_candle is None else dict(row.partial_candle),
            open_position=None if row.open_position is None else dict(row.open_position),
        )


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where an instrument's stream must be published again from after it was lost: the
    oldest durable cursor of the active sessions reading it (``0-0``: one never snapshotted,
    so from the start), or earlier the data time of their oldest order not final (not yet
    sent, or resting at the broker: either fills on the first print at or after its decision,
    which must be there again); and those sessions."""

    instrument: str
    cursor: str
    session_ids: tuple[str, ...]
    unsent_from_ms: int | None = None

    @property
    def from_ms(self) -> int:
        """The data time (epoch ms) to publish again from: the whole millisecond of the cursor
        (so the entries get the ids they had: ids are ``<data time>-<n>``), or the oldest
        open order's decision if earlier."""
        cursor_ms = _id_order(self.cursor)[0]
        if self.unsent_from_ms is None:
            return cursor_ms
        return min(cursor_ms, self.unsent_from_ms)


def resume_point(engine: Engine, instrument: str) -> ResumePoint:
    """The oldest snapshot cursor of the active sessions on ``instrument`` and their oldest
    order not final (see ``ResumePoint``); with no such session, the stream's start."""
    query = (
        select(TradingSessionRow.id, StrategySnapshotRow.cursor)
        .outerjoin(StrategySnapshotRow, StrategySnapshotRow.session_id == TradingSessionRow.id)
        .where(TradingSessionRow.status == "active", TradingSessionRow.contract == instrument)
        .order_by(TradingSessionRow.id)
    )
    with Session(engine) as db:
        rows = db.execute(query).all()
        ids = [sid for sid, _ in rows]
        unsent = db.scalar(
            select(func.min(OrderRow.decided_at)).where(
                OrderRow.session_id.in_(ids),
                OrderRow.contract == instrument,
                OrderRow.status.in_(OPEN_ORDER_STATUSES),
            )
        )
    cursors = [cursor or "0-0" for _, cursor in rows]
    oldest = min(cursors, key=_id_order, default="0-0")
    unsent_ms = None if unsent is None else epoch_ms(unsent)
    return ResumePoint(instrument, oldest, tuple(ids), unsent_ms)


def _id_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
