"""``tradefleet account set A [--heat-warn 0.06] [--heat-block 0.10] [--max-daily-loss 5000]``."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer

from trading.exceptions import BadInput
from workers.connections import require_redis
from workers.db.engines import engine_for
from workers.risk.accounts import AccountChange, set_account
from workers.risk.book import RiskBook
from workers.settings import get_settings

app = typer.Typer(help="Per-account risk settings.", no_args_is_help=True)


def _decimal(name: str, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise BadInput(f"{name} must be a decimal number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise BadInput(f"{name} must be a finite number >= 0, got {value!r}")
    return number


@app.command("set")
def set_cmd(
    account: Annotated[str, typer.Argument(help="The account.")],
    heat_warn: Annotated[
        str | None, typer.Option("--heat-warn", help="Warn level, fraction of equity (0.06).")
    ] = None,
    heat_block: Annotated[
        str | None, typer.Option("--heat-block", help="Block level, fraction of equity (0.10).")
    ] = None,
    max_daily_loss: Annotated[
        str | None, typer.Option("--max-daily-loss", help="Entries stop for the day at this loss.")
    ] = None,
) -> None:
    """Set an account's heat levels and daily loss limit (kept in SQL, applied at once)."""
    settings = get_settings()
    client = require_redis(settings)
    engine = engine_for(settings.sqlalchemy_url)
    try:
        change = AccountChange(
            heat_warn=_decimal("--heat-warn", heat_warn),
            heat_block=_decimal("--heat-block", heat_block),
            max_daily_loss=_decimal("--max-daily-loss", max_daily_loss),
        )
        if change.max_daily_loss is not None and change.max_daily_loss <= 0:
            raise BadInput("--max-daily-loss must be greater than 0")
        levels = set_account(engine, RiskBook(client, settings.risk), account, change)
    finally:
        client.close()
    loss = "none" if levels.max_daily_loss is None else str(levels.max_daily_loss)
    typer.echo(
        f"account {account}: heat warn {levels.heat_warn}, block {levels.heat_block}, "
        f"max daily loss {loss}"
    )
