"""After a fill changed a session's position: its open risk on the account book, the daily loss.

Called by ``workers.orders.fills`` under the session's lock, before its state write, so the
session's heat fields are written with the position. Exits and reductions release risk here (a flat
session holds none). A failure is logged and never stops the fill from being applied:
reconciliation and the next fill correct the book.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal

import redis
from sqlalchemy.engine import Engine

from models.state import ContractDetails, OpenPosition, WorkingOrder
from trading.risk import warn_event
from workers.db.event_rows import record_event
from workers.risk.book import RiskBook
from workers.settings import RiskSettings

log = logging.getLogger(__name__)


def risk_after_fill(
    client: redis.Redis,
    engine: Engine,
    account: str,
    session_id: str,
    position: OpenPosition,
    details: ContractDetails,
    mark: Decimal,
    realized: Decimal,
    trade_date: str,
    equity: Decimal | None,
    risk: RiskSettings,
) -> dict[str, object]:
    """The session's heat fields after its position became ``position`` (marked at ``mark``)."""
    try:
        book = RiskBook(client, risk)
        per_contract = None
        if position.stop_price is not None:
            per_contract = abs(mark - position.stop_price) * details.multiplier
        answer = book.set_position(account, session_id, position.quantity, per_contract, equity)
        crossing = warn_event(answer, account)
        if crossing is not None:
            if crossing.severity == "warning":
                log.warning("session %s: %s %s", session_id, crossing.message, crossing.details)
            record_event(
                engine, session_id, "risk", crossing.severity, crossing.message, crossing.details
            )
        if realized and book.add_realized(account, trade_date, realized):
            record_event(
                engine,
                session_id,
                "risk",
                "warning",
                f"account {account} reached its daily loss limit: entries blocked for {trade_date}",
                {"account": account, "trade_date": trade_date},
            )
    except Exception:
        log.exception("session %s: the account risk book was not updated", session_id)
        return {}
    return {
        "portfolio_heat": answer.heat.quantize(Decimal("0.000001")),
        "portfolio_heat_warned": answer.warned,
        "portfolio_heat_blocked": answer.blocked,
    }


def release_entry(
    client: redis.Redis,
    account: str,
    session_id: str,
    position: OpenPosition | None,
    remaining: Mapping[str, WorkingOrder],
    risk: RiskSettings,
) -> Decimal | None:
    """An entry reserved at order time died at the broker (rejected, cancelled, lost): the
    session's risk on the account book goes back to what it holds plus what its remaining
    open orders still ask for (at the per-contract risk of its last entry; flat → none).
    Returns the account's heat after, or None when the book could
    not be updated (logged; the next fill or reconciliation corrects it)."""
    held = 0 if position is None else position.quantity
    pending = sum(
        (o.quantity - o.filled_quantity) * (1 if o.side == "buy" else -1)
        for o in remaining.values()
        if o.status in ("new", "sent", "working", "partially_filled")
    )
    try:
        book = RiskBook(client, risk)
        answer = book.set_position(account, session_id, held + pending, None, None)
    except Exception:
        log.exception("session %s: the reservation of a dead entry was not released", session_id)
        return None
    return answer.heat
