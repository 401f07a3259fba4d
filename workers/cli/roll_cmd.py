"""``tradefleet roll``: start a contract roll now, or show, resume or abort one.

- ``tradefleet roll SESSION_ID [--to CONTRACT]`` starts a roll of that session now (to the next
  listed contract unless ``--to`` names another one of the same product); the workers on the
  ``rolls`` queue run it. Refused if the session already has an unfinished roll.
- ``tradefleet roll ID --resume | --abort | --show``: ``ID`` is a roll id (digits) or a session
  id (that session's unfinished roll, else its latest). ``--resume`` runs a failed or waiting
  roll again from the step it recorded; ``--abort`` ends it without finishing (its working
  orders cancelled, the session left not trading); ``--show`` prints it.

Starting, resuming and aborting leave an ``operator`` event naming ``cli:<user>``, as the
console's roll actions do (``workers.web.actions``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from models.tables import RollRow
from trading.exceptions import BadInput
from workers.celery_app import create_app
from workers.cli.actor import cli_actor
from workers.connections import require_redis
from workers.rolls.by_operator import abort_by, resume_by, roll_now
from workers.rolls.chain import find_roll
from workers.runtime import Runtime
from workers.settings import get_settings


def _view(row: RollRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "session": row.session_id,
        "from": row.from_contract,
        "to": row.to_contract,
        "quantity": row.quantity,
        "status": row.status,
        "step": row.step,
        "decided_at": row.decided_at.isoformat(),
        "close_fill_price": None if row.close_fill_price is None else str(row.close_fill_price),
        "open_fill_price": None if row.open_fill_price is None else str(row.open_fill_price),
        "error": row.error,
    }


def roll(
    target: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="A session id (starts a roll); with --resume/--abort/--show a roll id or a "
            "session id.",
        ),
    ],
    to: Annotated[
        str | None, typer.Option("--to", help="The contract to roll into (default: the next).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Resume a failed roll.")] = False,
    abort: Annotated[bool, typer.Option("--abort", help="Abort a failed roll.")] = False,
    show: Annotated[bool, typer.Option("--show", help="Print the roll.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the roll as JSON.")] = False,
) -> None:
    """Start a contract roll now, or show, resume or abort one."""
    if resume + abort + show > 1:
        raise BadInput("give at most one of --resume, --abort, --show")
    if to is not None and (resume or abort or show):
        raise BadInput("--to only goes with starting a roll")
    settings = get_settings()
    require_redis(settings).close()
    rt = Runtime(settings)
    if show:
        row = find_roll(rt, target)
    elif abort:
        row = abort_by(rt, find_roll(rt, target).id, cli_actor())
    else:
        celery = create_app(settings)
        try:
            if resume:
                row = resume_by(rt, celery, find_roll(rt, target).id, cli_actor())
            else:
                row = roll_now(rt, celery, target, to, cli_actor())
        finally:
            celery.close()
    view = _view(row)
    if as_json:
        typer.echo(json.dumps(view))
        return
    line = (
        f"roll {row.id} {row.status} at {row.step}: session {row.session_id} "
        f"{row.from_contract} -> {row.to_contract}, quantity {row.quantity}"
    )
    typer.echo(line + (f" ({row.error})" if row.error else ""))
