"""A roll started now, resumed or aborted by an operator, the CLI and the console alike: the
roll function (``workers.rolls.chain``), then the ``operator`` event naming who acted."""

from __future__ import annotations

from celery import Celery

from models.tables import RollRow
from workers.operations.audit import roll_event
from workers.rolls.chain import abort_roll, resume_roll, start_roll
from workers.runtime import Runtime


def roll_now(rt: Runtime, app: Celery, session_id: str, to: str | None, actor: str) -> RollRow:
    """Start the session's roll now (to ``to``, else the next contract)."""
    row = start_roll(rt, app, session_id, to)
    roll_event(rt.engine, row, "started", actor)
    return row


def resume_by(rt: Runtime, app: Celery, roll_id: int, actor: str) -> RollRow:
    """Run a failed or waiting roll again from the step it recorded."""
    row = resume_roll(rt, app, roll_id)
    roll_event(rt.engine, row, "resumed", actor)
    return row


def abort_by(rt: Runtime, roll_id: int, actor: str) -> RollRow:
    """End a failed or waiting roll without finishing it (its session left not trading)."""
    row = abort_roll(rt, roll_id)
    roll_event(rt.engine, row, "aborted", actor)
    return row
