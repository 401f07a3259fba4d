"""Gauges read at scrape time: every active session's position and P&L, and every account's
heat against its levels, halt and day's loss, from the sessions' Redis and SQL.

A scrape costs three SQL reads (the active sessions, the accounts) and one Redis pipeline
(each session's few state fields and each account's risk hash), whatever the fleet's size.
A session is labelled by its name (unique, chosen by the operator, bounded by the fleet's
size), its account and its product: a session's series lives as long as the session. Money
is the session's Decimal, given to Prometheus as a float (its only number type), in dollars.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import Metric as Family

from models.codec import decode_field, state_key
from models.meta import RECONCILE_FIELD
from models.state import OpenPosition, PnlInfo
from models.tables import TradingSessionRow
from trading.reconcile import ReconcileMeta
from workers.risk.accounts import active_sessions, known_accounts
from workers.risk.book import AccountRisk, account_risk_of, risk_key
from workers.runtime import Runtime

SESSION_LABELS = ("session", "account", "product")
SESSION_FIELDS = ("open_position", "account_pnl_info", "trading", RECONCILE_FIELD)


@dataclass(frozen=True, slots=True)
class SessionFigures:
    """What one active session's state says, decoded."""

    labels: tuple[str, str, str]
    position: int
    realized: Decimal
    unrealized: Decimal
    commissions: Decimal
    trading: bool
    stale: bool


def fleet_families(rt: Runtime) -> Iterator[Family]:
    """The sessions' and accounts' gauges, read now."""
    sessions = active_sessions(rt.engine)
    accounts = known_accounts(rt.engine)
    with rt.redis.pipeline(transaction=False) as pipe:
        for row in sessions:
            pipe.hmget(state_key(row.id), list(SESSION_FIELDS))
        for account in accounts:
            pipe.hgetall(risk_key(account))
        replies: list[Any] = pipe.execute()
    states, books = replies[: len(sessions)], replies[len(sessions) :]
    figures = [
        figure
        for row, values in zip(sessions, states, strict=True)
        if (figure := session_figures(row, values)) is not None
    ]
    yield from session_families(len(sessions), figures)
    risks = [
        account_risk_of(account, raw, rt.settings.risk)
        for account, raw in zip(accounts, books, strict=True)
    ]
    yield from account_families(risks)


def session_figures(
    row: TradingSessionRow, values: Sequence[bytes | None]
) -> SessionFigures | None:
    """The session's figures, or None when it has no state in Redis (it awaits recovery)."""
    raw = dict(zip(SESSION_FIELDS, values, strict=True))
    if raw["open_position"] is None:
        return None
    position: OpenPosition | None = decode_field("open_position", _text(raw["open_position"]))
    pnl_raw = raw["account_pnl_info"]
    pnl: PnlInfo = (
        PnlInfo() if pnl_raw is None else decode_field("account_pnl_info", _text(pnl_raw))
    )
    trading_raw = raw["trading"]
    trading = trading_raw is not None and bool(decode_field("trading", _text(trading_raw)))
    meta_raw = raw[RECONCILE_FIELD]
    meta = ReconcileMeta.from_json(None if meta_raw is None else _text(meta_raw))
    return SessionFigures(
        labels=(row.name, row.account, row.product),
        position=0 if position is None else position.quantity,
        realized=pnl.realized,
        unrealized=pnl.unrealized,
        commissions=pnl.commissions,
        trading=trading,
        stale=meta.stale,
    )


def session_families(active: int, figures: Sequence[SessionFigures]) -> Iterator[Family]:
    def gauge(name: str, text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, labels=SESSION_LABELS)

    position = gauge(
        "tradefleet_session_position_contracts",
        "The session's position in contracts (its working copy; reconciliation keeps it at "
        "the broker's): positive long, negative short.",
    )
    realized = gauge(
        "tradefleet_session_realized_pnl_dollars",
        "The session's realized P&L in dollars, before commissions.",
    )
    unrealized = gauge(
        "tradefleet_session_unrealized_pnl_dollars",
        "The session's open position marked to its last tick, in dollars.",
    )
    commissions = gauge(
        "tradefleet_session_commissions_dollars", "Commissions the session paid, in dollars."
    )
    trading = gauge(
        "tradefleet_session_trading", "1 while the session may trade (its trading flag), else 0."
    )
    stale = gauge(
        "tradefleet_session_stale",
        "1 when the session's last position reconciliation got no answer from the broker.",
    )
    for figure in figures:
        labels = list(figure.labels)
        position.add_metric(labels, figure.position)
        realized.add_metric(labels, float(figure.realized))
        unrealized.add_metric(labels, float(figure.unrealized))
        commissions.add_metric(labels, float(figure.commissions))
        trading.add_metric(labels, int(figure.trading))
        stale.add_metric(labels, int(figure.stale))
    yield from (position, realized, unrealized, commissions, trading, stale)
    yield GaugeMetricFamily("tradefleet_sessions_active", "Active sessions (SQL).", value=active)
    yield GaugeMetricFamily(
        "tradefleet_sessions_stale",
        "Active sessions whose last position reconciliation got no answer from the broker.",
        value=sum(figure.stale for figure in figures),
    )
    yield GaugeMetricFamily(
        "tradefleet_sessions_without_state",
        "Active sessions with no state in Redis (awaiting recovery).",
        value=active - len(figures),
    )


def account_families(risks: Sequence[AccountRisk]) -> Iterator[Family]:
    def gauge(name: str, text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, labels=("account",))

    heat = gauge(
        "tradefleet_account_heat_ratio",
        "The account's portfolio heat: open risk of its sessions over its equity.",
    )
    warn = gauge("tradefleet_account_heat_warn_ratio", "Heat above which the account warns.")
    block = gauge(
        "tradefleet_account_heat_block_ratio", "Heat above which the account's entries are refused."
    )
    risk = gauge("tradefleet_account_open_risk_dollars", "Open risk of the account's sessions.")
    equity = gauge("tradefleet_account_equity_dollars", "The account's equity the book holds.")
    warned = gauge("tradefleet_account_heat_warned", "1 while the account's heat warning is set.")
    blocked = gauge("tradefleet_account_heat_blocked", "1 while heat blocks the account's entries.")
    halted = gauge("tradefleet_account_halted", "1 while the operator has halted the account.")
    day_pnl = gauge(
        "tradefleet_account_day_realized_pnl_dollars",
        "Realized P&L of the account's latest trade date (the day the daily loss limit is "
        "checked against).",
    )
    max_loss = gauge(
        "tradefleet_account_max_daily_loss_dollars",
        "The account's daily loss limit (absent when it has none).",
    )
    loss_hit = gauge(
        "tradefleet_account_daily_loss_reached",
        "1 when the latest trade date reached the daily loss limit (entries refused that day).",
    )
    for item in risks:
        labels = [item.account]
        heat.add_metric(labels, float(item.heat))
        warn.add_metric(labels, float(item.heat_warn))
        block.add_metric(labels, float(item.heat_block))
        risk.add_metric(labels, float(item.total))
        if item.equity is not None:
            equity.add_metric(labels, float(item.equity))
        warned.add_metric(labels, int(item.warned))
        blocked.add_metric(labels, int(item.blocked))
        halted.add_metric(labels, int(item.halted))
        if item.day_pnl is not None:
            day_pnl.add_metric(labels, float(item.day_pnl[1]))
        if item.max_daily_loss is not None:
            max_loss.add_metric(labels, float(item.max_daily_loss))
        reached = item.day_pnl is not None and item.loss_day == item.day_pnl[0]
        loss_hit.add_metric(labels, int(reached))
    yield from (heat, warn, block, risk, equity, warned, blocked, halted, day_pnl, max_loss)
    yield loss_hit


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


__all__ = ["SessionFigures", "fleet_families", "session_figures"]
