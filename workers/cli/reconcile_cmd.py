"""``tradefleet reconcile positions|orders``: one reconciliation pass, here and now or queued.

``--now`` runs the pass in this process and prints one line per session (in sync, corrected
from X to Y, re-check, failed, ...); without it, one task per active session is queued on
the ``reconcile`` queue for the workers.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from trading.exceptions import UnknownSession
from workers.celery_app import create_app
from workers.cli.actor import cli_actor
from workers.connections import require_redis
from workers.db.session_rows import get_session_row, list_session_rows
from workers.reconcile.by_operator import reconcile_now
from workers.reconcile.order_check import reconcile_orders
from workers.reconcile.schedule import SESSION_TASKS, Job, active_sessions
from workers.runtime import Runtime
from workers.settings import get_settings

app = typer.Typer(
    help="Reconciliation with the broker (the broker is the truth).", no_args_is_help=True
)

SessionOption = Annotated[
    str | None, typer.Option("--session", help="Only this session (default: every active one).")
]
NowOption = Annotated[
    bool, typer.Option("--now", help="Run the pass here and now (default: queue it).")
]


def quiet_logs() -> None:
    """What a pass logs (it is also in its printed line and its event rows) stays off the
    terminal unless the caller configured logging: stderr is for refusals."""
    logging.getLogger("workers").addHandler(logging.NullHandler())


def _sessions(rt: Runtime, session_id: str | None) -> list[str]:
    if session_id is not None:
        if get_session_row(rt.engine, session_id) is None:
            raise UnknownSession(session_id)
        return [session_id]
    return [row.id for row in list_session_rows(rt.engine) if row.status == "active"]


def _run(job: Job, session_id: str | None, now: bool) -> None:
    quiet_logs()
    settings = get_settings()
    require_redis(settings).close()
    rt = Runtime(settings)
    try:
        if not now:
            ids = _sessions(rt, session_id) if session_id is not None else active_sessions(rt)
            celery = create_app(settings)
            try:
                for sid in ids:
                    args: list[object] = [sid, 0] if job == "positions" else [sid]
                    celery.send_task(SESSION_TASKS[job], args=args, queue=settings.queues.reconcile)
            finally:
                celery.close()
            typer.echo(f"queued a {job} pass for {len(ids)} session(s)")
            return
        ids = _sessions(rt, session_id)
        if not ids:
            typer.echo("no active sessions")
        for sid in ids:
            if job == "positions":
                typer.echo(reconcile_now(rt, sid, cli_actor()).line())
            else:
                typer.echo(reconcile_orders(rt, sid).line())
    finally:
        rt.engine.dispose()
        rt.redis.close()


@app.command("positions")
def positions_cmd(session: SessionOption = None, now: NowOption = False) -> None:
    """Each session's position against the broker's; a difference is corrected."""
    _run("positions", session, now)


@app.command("orders")
def orders_cmd(session: SessionOption = None, now: NowOption = False) -> None:
    """Each session's open orders against the broker's."""
    _run("orders", session, now)
