"""Thin typed access to the durable record, for the CLI and the tasks.

Every function takes, explicitly, either
- a ``Session``: it works inside the caller's transaction and never commits (writes are
  flushed, so a constraint the database refuses raises here); or
- an ``Engine``: it runs in a transaction of its own, committed before it returns; the rows it
  returns are detached but fully loaded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.state import SessionState
from models.tables import (
    EVENT_KINDS,
    SESSION_STATUSES,
    SEVERITIES,
    EventKind,
    EventRow,
    SessionStatus,
    Severity,
    TradingSessionRow,
)
from trading.exceptions import BadInput, UnknownSession


@contextmanager
def _session(db: Session | Engine) -> Iterator[Session]:
    if isinstance(db, Session):
        yield db
        return
    with Session(db, expire_on_commit=False) as session, session.begin():
        yield session


def create_session_row(db: Session | Engine, state: SessionState) -> TradingSessionRow:
    """Insert the durable definition of a new session, taken from its initial state.

    The row keeps the state's id and ``created_at``, so SQL and Redis agree. A name already
    taken is refused with ``BadInput`` (the unique constraint backs this up under races).
    """
    info = state.session
    if not info.name.strip():
        raise BadInput("a session needs a non-empty name")
    template = state.order_template
    with _session(db) as session:
        if find_session_row_by_name(session, info.name) is not None:
            raise BadInput(f"a session named {info.name!r} already exists")
        row = TradingSessionRow(
            id=info.id,
            name=info.name,
            account=info.account,
            product=info.product,
            contract=info.contract,
            timeframe=info.timeframe,
            strategy_name=state.strategy.module,
            strategy_args=dict(state.strategy.args),
            market_data_source=state.market_data_source.module,
            market_data_args=dict(state.market_data_source.args),
            account_manager=state.account_manager.module,
            account_manager_args=dict(state.account_manager.args),
            order_template={
                "order_type": template.order_type,
                "quantity": template.quantity,
                "time_in_force": template.time_in_force,
            },
            status="active",
            created_at=info.created_at,
            updated_at=info.created_at,
        )
        session.add(row)
        session.flush()
        return row


def get_session_row(db: Session | Engine, session_id: str) -> TradingSessionRow | None:
    """The session with this id, or ``None``."""
    with _session(db) as session:
        return session.get(TradingSessionRow, session_id)


def find_session_row_by_name(db: Session | Engine, name: str) -> TradingSessionRow | None:
    """The session with this (unique) name, or ``None``."""
    query = select(TradingSessionRow).where(TradingSessionRow.name == name)
    with _session(db) as session:
        return session.scalars(query).first()


def list_session_rows(db: Session | Engine) -> Sequence[TradingSessionRow]:
    """Every session, oldest first."""
    query = select(TradingSessionRow).order_by(TradingSessionRow.created_at, TradingSessionRow.name)
    with _session(db) as session:
        return session.scalars(query).all()


def record_event(
    db: Session | Engine,
    session_id: str | None,
    kind: EventKind,
    severity: Severity,
    message: str,
    details: Mapping[str, Any] | None = None,
) -> EventRow:
    """Append one event (``session_id=None`` for an account-wide event)."""
    if kind not in EVENT_KINDS:
        raise BadInput(f"unknown event kind {kind!r} (known: {', '.join(EVENT_KINDS)})")
    if severity not in SEVERITIES:
        raise BadInput(f"unknown severity {severity!r} (known: {', '.join(SEVERITIES)})")
    row = EventRow(
        session_id=session_id,
        kind=kind,
        severity=severity,
        message=message,
        details=dict(details or {}),
    )
    with _session(db) as session:
        session.add(row)
        session.flush()
        return row


def record_events_once(engine: Engine, rows: Sequence[EventRow]) -> int:
    """Append events that carry a ``dedupe_key``, each once: a row whose key is there already
    (written by an earlier run of the same work) is skipped. One transaction; if another
    writer inserts one of them meanwhile, each is written on its own. Returns rows written."""
    keyed = {row.dedupe_key: row for row in rows if row.dedupe_key is not None}
    if not keyed:
        return 0
    with Session(engine) as db:
        present = set(db.scalars(select(EventRow.dedupe_key).where(EventRow.dedupe_key.in_(keyed))))
        fresh = [row for key, row in keyed.items() if key not in present]
        db.add_all(fresh)
        try:
            db.commit()
            return len(fresh)
        except IntegrityError:
            db.rollback()
    written = 0
    for row in fresh:
        with Session(engine) as db:
            db.add(row)
            try:
                db.commit()
                written += 1
            except IntegrityError:
                db.rollback()
    return written


def list_events(
    db: Session | Engine,
    session_id: str | None = None,
    kind: EventKind | None = None,
    limit: int | None = None,
) -> Sequence[EventRow]:
    """Events, oldest first, optionally of one session and/or one kind; ``limit`` keeps the
    newest ``limit`` of them."""
    query = select(EventRow)
    if session_id is not None:
        query = query.where(EventRow.session_id == session_id)
    if kind is not None:
        query = query.where(EventRow.kind == kind)
    with _session(db) as session:
        if limit is None:
            return session.scalars(query.order_by(EventRow.created_at, EventRow.id)).all()
        newest = query.order_by(EventRow.created_at.desc(), EventRow.id.desc()).limit(limit)
        return list(reversed(session.scalars(newest).all()))


def set_session_status(
    db: Session | Engine, session_id: str, status: SessionStatus
) -> TradingSessionRow:
    """Mark a session active or stopped; an unknown id raises ``UnknownSession``."""
    if status not in SESSION_STATUSES:
        raise BadInput(f"unknown session status {status!r} (known: {', '.join(SESSION_STATUSES)})")
    with _session(db) as session:
        row = session.get(TradingSessionRow, session_id)
        if row is None:
            raise UnknownSession(session_id)
        row.status = status
        session.flush()
        return row
