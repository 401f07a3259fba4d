"""The rolls and events pages' read models: unfinished and recent rolls, events filtered by
kind, severity and session. Reads only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from models.tables import (
    EVENT_KINDS,
    SEVERITIES,
    EventKind,
    RollRow,
    Severity,
)
from trading.exceptions import BadInput
from workers.db.event_rows import list_events
from workers.db.roll_rows import list_rolls
from workers.db.session_rows import get_session_row, list_session_rows
from workers.operations.fleet import (
    EventView,
    _event_view,
)
from workers.runtime import Runtime

RECENT_ROLLS = 20
"""Done and aborted rolls shown on the rolls page."""
EVENTS_SHOWN = 200


@dataclass(frozen=True, slots=True)
class RollsView:
    running: list[RollRow]
    failed: list[RollRow]
    needs_operator: list[RollRow]
    recent: list[RollRow]
    """Done and aborted, newest first (``RECENT_ROLLS``)."""
    names: dict[str, str]
    """Session names by id."""


def rolls_view(rt: Runtime) -> RollsView:
    rolls = list(reversed(list_rolls(rt.engine)))
    names = {row.id: row.name for row in list_session_rows(rt.engine)}
    return RollsView(
        running=[r for r in rolls if r.status == "running"],
        failed=[r for r in rolls if r.status == "failed"],
        needs_operator=[r for r in rolls if r.status == "needs_operator"],
        recent=[r for r in rolls if r.status in {"done", "aborted"}][:RECENT_ROLLS],
        names=names,
    )


@dataclass(frozen=True, slots=True)
class EventFilter:
    kind: EventKind | None = None
    severity: Severity | None = None
    session_id: str | None = None


def event_filter(
    rt: Runtime, kind: str | None, severity: str | None, session: str | None
) -> EventFilter:
    """The filter of the events page from its query values (empty = any); ``BadInput`` for
    a kind, severity or session that does not exist."""
    kind = kind or None
    severity = severity or None
    session = session or None
    if kind is not None and kind not in EVENT_KINDS:
        raise BadInput(f"unknown event kind {kind!r} (known: {', '.join(EVENT_KINDS)})")
    if severity is not None and severity not in SEVERITIES:
        raise BadInput(f"unknown severity {severity!r} (known: {', '.join(SEVERITIES)})")
    if session is not None and get_session_row(rt.engine, session) is None:
        raise BadInput(f"no session {session!r} to filter events by")
    return EventFilter(cast(EventKind | None, kind), cast(Severity | None, severity), session)


def events_view(rt: Runtime, chosen: EventFilter, limit: int = EVENTS_SHOWN) -> list[EventView]:
    """The newest ``limit`` events that pass the filter, newest first."""
    rows = list_events(
        rt.engine, chosen.session_id, chosen.kind, limit=limit, severity=chosen.severity
    )
    return [_event_view(row) for row in reversed(rows)]
