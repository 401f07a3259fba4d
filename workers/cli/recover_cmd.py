"""``tradefleet recover [--session ID]``: rebuild sessions whose Redis state is missing.

Runs here and now, one line per session: recovered (position, open orders, balance, candles
re-warmed, snapshot age), state present, busy (another recovery runs), or failed (the broker did
not answer: nothing was assumed; run it again). Without ``--session``: every active session
whose state is missing. An unknown session id is refused (one line, exit 2).
"""

from __future__ import annotations

from typing import Annotated

import typer

from workers.celery_app import create_app
from workers.cli.reconcile_cmd import quiet_logs
from workers.connections import require_redis
from workers.dispatch.recovery import missing_sessions
from workers.recovery.recover import recover_session
from workers.runtime import Runtime, make_publisher
from workers.settings import get_settings

SessionOption = Annotated[
    str | None,
    typer.Option("--session", help="Only this session (default: every one without state)."),
]


def recover(session: SessionOption = None) -> None:
    """Rebuild sessions whose Redis state is missing, from SQL and the broker."""
    quiet_logs()
    settings = get_settings()
    require_redis(settings).close()
    rt = Runtime(settings)
    celery = create_app(settings)
    try:
        publisher = make_publisher(rt.redis, settings, celery)
        ids = [session] if session is not None else missing_sessions(rt.redis, rt.engine)
        if not ids:
            typer.echo("no session needs recovery")
            return
        failed = False
        for sid in ids:
            report = recover_session(rt, sid, wake=publisher.wake)
            failed = failed or report.outcome == "failed"
            typer.echo(report.line())
        if failed:
            raise typer.Exit(1)
    finally:
        celery.close()
        rt.engine.dispose()
        rt.redis.close()
