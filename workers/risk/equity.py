"""An account's equity from its broker (the cash balance), asked when the risk book has none."""

from __future__ import annotations

import logging
from decimal import Decimal

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine

from models.tables import TradingSessionRow
from workers.brokers.commands import QueryBalance
from workers.brokers.registry import build_broker
from workers.risk.book import EquitySource
from workers.settings import Settings

log = logging.getLogger(__name__)

_ACCOUNT_BROKER = (
    select(TradingSessionRow.account_manager, TradingSessionRow.account_manager_args)
    .where(TradingSessionRow.account == bindparam("account"))
    .limit(1)
)
"""The broker of an account's first session (a statement built once: its compiled form is
cached)."""


def broker_equity(engine: Engine, settings: Settings) -> EquitySource:
    """Equity of an account: the balance its (first) session's broker reports; None if the
    account has no session or the broker does not answer (an entry is then refused)."""

    def equity(account: str) -> Decimal | None:
        with engine.connect() as conn:
            row = conn.execute(_ACCOUNT_BROKER, {"account": account}).first()
        if row is None:
            return None
        name, args = row.account_manager, dict(row.account_manager_args)
        try:
            return build_broker(name, args, settings).balance(QueryBalance(account)).cash
        except Exception:
            log.exception("account %s: the broker's balance could not be read", account)
            return None

    return equity
