"""One session's line in the demo's summary: what it traded, against the broker's position."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SessionSummary:
    id: str
    name: str
    account: str
    product: str
    contract: str
    ticks_processed: int
    ticks_rejected: int
    candles_closed: int
    orders: int
    fills: int
    position: int
    broker_position: int
    realized_pnl: str
    commissions: str
    portfolio_heat: str = "0"
    portfolio_heat_warned: bool = False
    portfolio_heat_blocked: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "account": self.account,
            "product": self.product,
            "contract": self.contract,
            "ticks_processed": self.ticks_processed,
            "ticks_rejected": self.ticks_rejected,
            "candles_closed": self.candles_closed,
            "orders": self.orders,
            "fills": self.fills,
            "position": self.position,
            "broker_position": self.broker_position,
            "realized_pnl": self.realized_pnl,
            "portfolio_heat": self.portfolio_heat,
            "portfolio_heat_warned": self.portfolio_heat_warned,
            "portfolio_heat_blocked": self.portfolio_heat_blocked,
        }
