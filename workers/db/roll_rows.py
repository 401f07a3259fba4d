"""Roll rows (``models.tables.RollRow``): create, read, and record a roll's progress.

Every function takes an ``Engine`` and runs in a transaction of its own; rows come back
detached and fully loaded. A roll reaching a result (done, failed, needs_operator, aborted) is
counted once per change of its status on ``metrics`` (``tradefleet_rolls_total{result}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.tables import UNFINISHED_ROLL_STATUSES, RollRow, RollStatus, RollStep
from trading.exceptions import BadInput
from workers.metrics.catalog import ROLL_RESULTS, ROLLS
from workers.metrics.counters import count


class RollExists(BadInput):
    """The session already has an unfinished roll; a second one is refused."""

    def __init__(self, session_id: str, roll_id: int | None) -> None:
        which = f" (roll {roll_id})" if roll_id is not None else ""
        super().__init__(f"session {session_id} already has an unfinished roll{which}")
        self.session_id = session_id
        self.roll_id = roll_id


class UnknownRoll(BadInput):
    def __init__(self, what: str) -> None:
        super().__init__(f"unknown roll: {what}")


def create_roll(
    engine: Engine, session_id: str, from_contract: str, to_contract: str, decided_at: datetime
) -> RollRow:
    """A new running roll at its first step; ``RollExists`` if the session has one unfinished
    (the partial unique index decides under races)."""
    row = RollRow(
        session_id=session_id,
        from_contract=from_contract,
        to_contract=to_contract,
        quantity=0,
        status="running",
        step="begin",
        decided_at=decided_at,
    )
    with Session(engine, expire_on_commit=False) as db:
        db.add(row)
        try:
            db.commit()
        except IntegrityError:
            db.rollback()
            existing = unfinished_roll(engine, session_id)
            raise RollExists(session_id, None if existing is None else existing.id) from None
    return row


def get_roll(engine: Engine, roll_id: int) -> RollRow | None:
    with Session(engine, expire_on_commit=False) as db:
        return db.get(RollRow, roll_id)


def require_roll(engine: Engine, roll_id: int) -> RollRow:
    row = get_roll(engine, roll_id)
    if row is None:
        raise UnknownRoll(str(roll_id))
    return row


def unfinished_roll(engine: Engine, session_id: str) -> RollRow | None:
    """The session's running, failed or waiting roll, if any."""
    query = select(RollRow).where(
        RollRow.session_id == session_id, RollRow.status.in_(UNFINISHED_ROLL_STATUSES)
    )
    with Session(engine, expire_on_commit=False) as db:
        return db.scalars(query).first()


def running_rolls(engine: Engine) -> Sequence[RollRow]:
    """Every roll whose status is ``running``, oldest first."""
    query = select(RollRow).where(RollRow.status == "running").order_by(RollRow.id)
    with Session(engine, expire_on_commit=False) as db:
        return db.scalars(query).all()


def list_rolls(engine: Engine, session_id: str | None = None) -> Sequence[RollRow]:
    """Rolls, oldest first, optionally of one session."""
    query = select(RollRow).order_by(RollRow.id)
    if session_id is not None:
        query = query.where(RollRow.session_id == session_id)
    with Session(engine, expire_on_commit=False) as db:
        return db.scalars(query).all()


_UPDATABLE = frozenset(
    {
        "quantity",
        "status",
        "step",
        "close_client_order_id",
        "open_client_order_id",
        "close_fill_price",
        "open_fill_price",
        "error",
    }
)


def update_roll(engine: Engine, roll_id: int, **changes: Any) -> RollRow:
    """Write ``changes`` to the roll's row (``updated_at`` moves with them)."""
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable roll columns: {sorted(unknown)}")
    with Session(engine, expire_on_commit=False) as db, db.begin():
        row = db.get(RollRow, roll_id, with_for_update=True)
        if row is None:
            raise UnknownRoll(str(roll_id))
        for name, value in changes.items():
            setattr(row, name, value)
    return row


def advance(
    engine: Engine,
    roll_id: int,
    done_step: str,
    next_step: RollStep,
    *,
    metrics: redis.Redis | None = None,
) -> bool:
    """Record that ``done_step`` finished: the row's step moves to ``next_step`` only if it
    still is ``done_step`` (a re-run of an older step never moves it back). True if moved; a
    move to ``done`` is counted on ``metrics``."""
    with Session(engine, expire_on_commit=False) as db, db.begin():
        row = db.get(RollRow, roll_id, with_for_update=True)
        if row is None:
            raise UnknownRoll(str(roll_id))
        if row.step != done_step:
            return False
        row.step = next_step
        if next_step == "done":
            row.status = "done"
    if next_step == "done" and metrics is not None:
        count(metrics, ROLLS, "done")
    return True


def set_status(
    engine: Engine,
    roll_id: int,
    status: RollStatus,
    error: str | None = None,
    *,
    metrics: redis.Redis | None = None,
) -> RollRow:
    """The roll's new status (and error); a change to a result is counted on ``metrics``."""
    with Session(engine, expire_on_commit=False) as db, db.begin():
        row = db.get(RollRow, roll_id, with_for_update=True)
        if row is None:
            raise UnknownRoll(str(roll_id))
        changed = row.status != status
        row.status = status
        if error is not None:
            row.error = error
    if changed and metrics is not None and status in ROLL_RESULTS:
        count(metrics, ROLLS, status)
    return row


def record_prices(
    engine: Engine, roll_id: int, close: Decimal | None, open_: Decimal | None
) -> None:
    changes: dict[str, Any] = {}
    if close is not None:
        changes["close_fill_price"] = close
    if open_ is not None:
        changes["open_fill_price"] = open_
    if changes:
        update_roll(engine, roll_id, **changes)
