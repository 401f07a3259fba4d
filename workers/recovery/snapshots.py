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
from typing import Any, cast

from sqlalchemy import Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.tables import StrategySnapshotRow
from workers.ticks.progress import TickProgress
from workers.ticks.step import PROGRESS_FIELD, StepResult, progress_of

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
    newest: dict[str, StrategySnapshot] = {}
    for snap in snapshots:
        kept = newest.get(snap.session_id)
        if kept is None or kept.candles_closed <= snap.candles_closed:
            newest[snap.session_id] = snap
    rows = [snap.as_row() for snap in newest.values()]
    table = cast(Table, StrategySnapshotRow.__table__)
    dialect = engine.dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(table)
        statement: Any = pg.on_conflict_do_update(
            index_elements=[table.c.session_id],
            set_={name: pg.excluded[name] for name in rows[0] if name != "session_id"},
            where=table.c.candles_closed <= pg.excluded.candles_closed,
        )
    elif dialect == "sqlite":
        lite = sqlite.insert(table)
        statement = lite.on_conflict_do_update(
            index_elements=[table.c.session_id],
            set_={name: lite.excluded[name] for name in rows[0] if name != "session_id"},
            where=table.c.candles_closed <= lite.excluded.candles_closed,
        )
    else:
        raise NotImplementedError(f"snapshots are not written on {dialect}")
    with Session(engine) as db, db.begin():
        db.execute(statement, rows)


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
