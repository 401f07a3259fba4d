"""The event log in SQL (``tradefleet events``): appended, once per dedupe key where an event
has one, and listed.

Every function takes, explicitly, either
- a ``Session``: it works inside the caller's transaction and never commits (writes are
  flushed, so a constraint the database refuses raises here); or
- an ``Engine``: it runs in a transaction of its own, committed before it returns; the rows it
  returns are detached but fully loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.tables import EVENT_KINDS, SEVERITIES, EventKind, EventRow, Severity
from trading.exceptions import BadInput
from workers.db.session_rows import in_session


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
    with in_session(db) as session:
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
    severity: Severity | None = None,
) -> Sequence[EventRow]:
    """Events, oldest first, optionally of one session, one kind and/or one severity;
    ``limit`` keeps the newest ``limit`` of them."""
    query = select(EventRow)
    if session_id is not None:
        query = query.where(EventRow.session_id == session_id)
    if kind is not None:
        query = query.where(EventRow.kind == kind)
    if severity is not None:
        query = query.where(EventRow.severity == severity)
    with in_session(db) as session:
        if limit is None:
            return session.scalars(query.order_by(EventRow.created_at, EventRow.id)).all()
        newest = query.order_by(EventRow.created_at.desc(), EventRow.id.desc()).limit(limit)
        return list(reversed(session.scalars(newest).all()))
