"""``tradefleet risk [--account A] [--json]``: heat, levels, sessions' parts, what is blocked."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any

import typer

from workers.connections import require_redis
from workers.db.engines import engine_for
from workers.risk.accounts import account_report, known_accounts
from workers.risk.book import RiskBook
from workers.settings import get_settings

_Q = Decimal("0.000001")


def _view(engine: Any, book: RiskBook, account: str) -> dict[str, Any]:
    risk, sessions = account_report(engine, book, account)
    blocked_by = [
        reason
        for reason, on in (
            ("heat", risk.blocked),
            ("halted", risk.halted),
            ("daily_loss", risk.loss_day is not None),
        )
        if on
    ]
    return {
        "account": account,
        "equity": None if risk.equity is None else str(risk.equity),
        "open_risk": str(risk.total),
        "heat": str(risk.heat.quantize(_Q)),
        "heat_warn": str(risk.heat_warn),
        "heat_block": str(risk.heat_block),
        "max_daily_loss": None if risk.max_daily_loss is None else str(risk.max_daily_loss),
        "warned": risk.warned,
        "blocked": bool(blocked_by),
        "blocked_by": blocked_by,
        "loss_day": risk.loss_day,
        "entries_refused": risk.rejected,
        "sessions": [
            {
                "session_id": s.session_id,
                "name": s.name,
                "position": s.position,
                "risk": str(s.risk),
                "heat": str(s.heat.quantize(_Q)),
            }
            for s in sessions
        ],
    }


def risk(
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show each account's heat, levels, sessions' contributions and what is blocked."""
    settings = get_settings()
    client = require_redis(settings)
    engine = engine_for(settings.sqlalchemy_url)
    try:
        book = RiskBook(client, settings.risk)
        accounts = [account] if account is not None else known_accounts(engine)
        views = [_view(engine, book, name) for name in accounts]
    finally:
        client.close()
    if as_json:
        typer.echo(json.dumps(views))
        return
    if not views:
        typer.echo("no accounts")
    for v in views:
        state = "BLOCKED (" + ", ".join(v["blocked_by"]) + ")" if v["blocked"] else "open"
        warned = " WARNED" if v["warned"] else ""
        typer.echo(
            f"account {v['account']}: heat {v['heat']} (warn {v['heat_warn']}, block "
            f"{v['heat_block']}), open risk {v['open_risk']}, equity {v['equity']}, "
            f"entries {state}{warned}, refused {v['entries_refused']}"
        )
        for s in v["sessions"]:
            typer.echo(
                f"  {s['name']:<20} {s['session_id']}  position {s['position']:>4}  "
                f"risk {s['risk']:>12}  heat {s['heat']}"
            )
