"""``tradefleet events``: the event rows (corrections, failures, adoptions, ...), oldest first."""

from __future__ import annotations

import json
from typing import Annotated, Any, cast

import typer

from models.tables import EVENT_KINDS, EventKind, EventRow
from trading.exceptions import BadInput, UnknownSession
from workers.db.engines import engine_for
from workers.db.event_rows import list_events
from workers.db.session_rows import get_session_row
from workers.settings import get_settings


def _view(row: EventRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": row.created_at.isoformat(),
        "session_id": row.session_id,
        "kind": row.kind,
        "severity": row.severity,
        "message": row.message,
        "details": row.details,
    }


def events(
    session: Annotated[str | None, typer.Option("--session", help="Only this session.")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help=f"Only this kind ({', '.join(EVENT_KINDS)}).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="The newest N events.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List events, oldest first (the newest --limit of them)."""
    if kind is not None and kind not in EVENT_KINDS:
        raise BadInput(f"unknown event kind {kind!r} (known: {', '.join(EVENT_KINDS)})")
    if limit < 1:
        raise BadInput(f"--limit must be at least 1, got {limit}")
    engine = engine_for(get_settings().sqlalchemy_url)
    if session is not None and get_session_row(engine, session) is None:
        raise UnknownSession(session)
    rows = list_events(engine, session_id=session, kind=cast(EventKind | None, kind), limit=limit)
    views = [_view(row) for row in rows]
    if as_json:
        typer.echo(json.dumps(views))
        return
    if not views:
        typer.echo("no events")
        return
    for view in views:
        details = json.dumps(view["details"], sort_keys=True) if view["details"] else ""
        typer.echo(
            f"{view['created_at']}  {view['severity']:<8} {view['kind']:<14} "
            f"{view['session_id'] or '-'}  {view['message']}" + (f"  {details}" if details else "")
        )
