"""``tradefleet halt [--account A] [--flatten]``, ``tradefleet resume [--account A]`` and
``tradefleet wind-down``.

Halt: entries are refused everywhere (or on the account), open entry orders are cancelled at
the broker, and with ``--flatten`` every session's exit to flat is sent here and now. Wind-down
is the whole fleet halted and flattened. Each leaves ``operator`` events naming ``cli:<user>``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from workers.cli.actor import cli_actor
from workers.cli.reconcile_cmd import quiet_logs
from workers.connections import require_redis
from workers.operations.halt import halt, resume, wind_down
from workers.runtime import Runtime
from workers.settings import get_settings

AccountOption = Annotated[
    str | None, typer.Option("--account", help="Only this account (default: every account).")
]


def halt_command(
    account: AccountOption = None,
    flatten: Annotated[
        bool, typer.Option("--flatten", help="Also send each session's exit to flat.")
    ] = False,
) -> None:
    """Stop trading: refuse entries, cancel open entry orders, optionally go flat."""
    quiet_logs()
    settings = get_settings()
    require_redis(settings).close()
    rt = Runtime(settings)
    try:
        report = halt(rt, account, flatten, cli_actor())
    finally:
        rt.engine.dispose()
        rt.redis.close()
    typer.echo(report.line())


def wind_down_command() -> None:
    """Wind the fleet down: halt entries everywhere, then take every active session to flat."""
    quiet_logs()
    settings = get_settings()
    require_redis(settings).close()
    rt = Runtime(settings)
    try:
        report = wind_down(rt, cli_actor())
    finally:
        rt.engine.dispose()
        rt.redis.close()
    typer.echo(report.line("wound down"))


def resume_command(account: AccountOption = None) -> None:
    """Lift a halt: entries are allowed again (within the risk limits)."""
    settings = get_settings()
    require_redis(settings).close()
    rt = Runtime(settings)
    try:
        accounts = resume(rt, account, cli_actor())
    finally:
        rt.engine.dispose()
        rt.redis.close()
    typer.echo(f"resumed {', '.join(accounts) or 'no account'}")
