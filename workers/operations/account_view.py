"""The accounts as the console's accounts page (and ``/metrics``) shows them: heat against its
levels, the halt, the day's loss against its limit, the positions and P&L of the fleet's
sessions on each. Reads only."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from trading.fleet_view import (
    AccountTotals,
)
from workers.operations.fleet import (
    HEAT_QUANTUM,
    FleetView,
    _risks,
)
from workers.risk.accounts import known_accounts
from workers.runtime import Runtime


@dataclass(frozen=True, slots=True)
class AccountView:
    """One account: its risk book against its levels, and its sessions' totals."""

    account: str
    equity: Decimal | None
    open_risk: Decimal
    heat: Decimal
    heat_warn: Decimal
    heat_block: Decimal
    warned: bool
    blocked: bool
    halted: bool
    loss_day: str | None
    day: str | None
    """The newest trade date with realized P&L in the book (data date, UTC)."""
    day_pnl: Decimal | None
    """Realized P&L net of commissions of ``day`` (the figure the daily loss limit checks)."""
    max_daily_loss: Decimal | None
    entries_refused: int
    totals: AccountTotals | None


def accounts_view(rt: Runtime, fleet: FleetView) -> list[AccountView]:
    """Every account with a session or settings of its own."""
    totals = {t.account: t for t in fleet.totals}
    views = []
    for account, risk in _risks(rt, known_accounts(rt.engine)).items():
        day, pnl = (None, None) if risk.day_pnl is None else risk.day_pnl
        views.append(
            AccountView(
                account=account,
                equity=risk.equity,
                open_risk=risk.total,
                heat=risk.heat.quantize(HEAT_QUANTUM),
                heat_warn=risk.heat_warn,
                heat_block=risk.heat_block,
                warned=risk.warned,
                blocked=risk.blocked,
                halted=risk.halted,
                loss_day=risk.loss_day,
                day=day,
                day_pnl=pnl,
                max_daily_loss=risk.max_daily_loss,
                entries_refused=risk.rejected,
                totals=totals.get(account),
            )
        )
    return views
