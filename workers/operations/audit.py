"""The ``operator`` event every operator action leaves, naming who acted.

``actor`` is the console's user name, or ``cli:<OS user>`` for the ``tradefleet`` command.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine

from models.tables import EventRow, RollRow, Severity
from trading.exceptions import BadInput
from workers.db.event_rows import record_event


def operator_event(
    engine: Engine,
    session_id: str | None,
    actor: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    severity: Severity = "warning",
) -> EventRow:
    """Append the ``operator`` event of an action: ``"<message> (by <actor>)"``, its details
    with ``user`` = ``actor``."""
    if not actor.strip():
        raise BadInput("an operator action needs the name of who acts")
    return record_event(
        engine,
        session_id,
        "operator",
        severity,
        f"{message} (by {actor})",
        {**(details or {}), "user": actor},
    )


def roll_event(engine: Engine, row: RollRow, what: str, actor: str) -> EventRow:
    """The ``operator`` event of a roll ``what`` (started, resumed, aborted) by ``actor``: the
    roll functions live above this layer (``workers.rolls``), so their callers, the CLI and
    the console, record it."""
    return operator_event(
        engine,
        row.session_id,
        actor,
        f"roll {row.id} {what}: {row.from_contract} -> {row.to_contract}",
        {"roll_id": row.id, "step": row.step, "status": row.status},
    )
