"""Strategy-state snapshots: one SQL row per session, upserted after tick steps that closed
candles (once per step, however many candles it closed), read back by recovery.

A snapshot is taken from what the step's fenced write has just stored: the strategy's state,
the signal sequence and closed-candle count (``_progress``), the last tick's data time and the
stream cursor. The upsert never moves a snapshot backwards (a slower writer holding an older
step's snapshot loses to the newer one already stored).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Engine, Table, TextClause, bindparam, select, text
from sqlalchemy.orm import Session

from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from models.tables import StrategySnapshotRow
from workers.ticks.step import StepResult, progress_of

log = logging.getLogger(__name__)


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

    @classmethod
    def of_progress(
        cls,
        session_id: str,
        strategy_state: dict[str, Any],
        progress: TickProgress,
        cursor: str,
        now: datetime,
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
    return StrategySnapshot.of_progress(
        session_id, state if isinstance(state, dict) else {}, progress, cursor, now
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
    (session_id, strategy_state, signal_seq, candles_closed, last_ms, cursor, taken_at)
VALUES
    (:session_id, :strategy_state, :signal_seq, :candles_closed, :last_ms, :cursor, :taken_at)
ON CONFLICT (session_id) DO UPDATE SET
    strategy_state = excluded.strategy_state,
    signal_seq = excluded.signal_seq,
    candles_closed = excluded.candles_closed,
    last_ms = excluded.last_ms,
    cursor = excluded.cursor,
    taken_at = excluded.taken_at
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
        )
