"""Gauges read at scrape time from the console's read models (``workers.operations.fleet``):
what the fleet page and the accounts page show, given to Prometheus.

A session's status is the console's, one definition for both: ``fleet_view`` applies
``trading.fleet_view.session_status`` (its words, their order and every rule are documented
there) at the scrape's wall time and the exchange's hours. Which series there are:

- ``tradefleet_sessions{status}``: how many sessions have each status, stopped ones included;
  every status word is reported, at 0 when none has it.
- ``tradefleet_session_trading`` / ``_stale``: 1 when the session's status is ``trading`` /
  ``stale``, else 0; for every session not stopped.
- its position (in its current contract), realized and unrealized P&L and commissions: for
  every session not stopped that holds state in Redis. One without state (awaiting recovery,
  status ``needs_operator``) has none of them: its position is unknown, not 0.

A session's series are labelled by its name (unique, chosen by the operator), its account and
its product; they live as long as the session is not stopped, so the series are bounded by the
sessions not stopped (six each), the status words (six) and the accounts (eleven each).

A scrape reads what a fleet page and an accounts page read: ``fleet_view``'s three SQL
queries and four Redis round trips, ``accounts_view``'s two SQL statements and one round trip,
whatever the fleet's size (the work within them is linear in its sessions and accounts). Money
is the read model's Decimal, given to Prometheus as a float (its only number type), in dollars.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import Metric as Family

from trading.fleet_view import STATUSES
from workers.operations.account_view import AccountView, accounts_view
from workers.operations.fleet import SessionView, fleet_view
from workers.runtime import Runtime

SESSION_LABELS = ("session", "account", "product")


def fleet_families(rt: Runtime) -> Iterator[Family]:
    """The sessions' and accounts' gauges, read now."""
    fleet = fleet_view(rt)
    yield from session_families(fleet.sessions)
    yield from account_families(accounts_view(rt, fleet))


def session_families(views: Sequence[SessionView]) -> Iterator[Family]:
    def gauge(name: str, text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, labels=SESSION_LABELS)

    position = gauge(
        "tradefleet_session_position_contracts",
        "The session's position in its current contract, in contracts (its working copy; "
        "reconciliation keeps it at the broker's): positive long, negative short.",
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
        "tradefleet_session_trading",
        "1 when the console's status of the session is trading, else 0.",
    )
    stale = gauge(
        "tradefleet_session_stale",
        "1 when the console's status of the session is stale (its feed stalled, no tick "
        "while the market is open, or the broker not answering its position check), else 0.",
    )
    for view in views:
        if view.status == "stopped":
            continue
        labels = [view.name, view.account, view.product]
        trading.add_metric(labels, int(view.status == "trading"))
        stale.add_metric(labels, int(view.status == "stale"))
        if not view.has_state:
            continue
        position.add_metric(labels, view.position)
        realized.add_metric(labels, float(view.realized))
        unrealized.add_metric(labels, float(view.unrealized))
        commissions.add_metric(labels, float(view.commissions))
    yield from (position, realized, unrealized, commissions, trading, stale)
    statuses = Counter(view.status for view in views)
    sessions = GaugeMetricFamily(
        "tradefleet_sessions",
        "Sessions by the console's status (trading, rolling, halted, stale, stopped, "
        "needs_operator).",
        labels=("status",),
    )
    for status in STATUSES:
        sessions.add_metric([status], statuses[status])
    yield sessions


def account_families(accounts: Sequence[AccountView]) -> Iterator[Family]:
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
    for item in accounts:
        labels = [item.account]
        heat.add_metric(labels, float(item.heat))
        warn.add_metric(labels, float(item.heat_warn))
        block.add_metric(labels, float(item.heat_block))
        risk.add_metric(labels, float(item.open_risk))
        if item.equity is not None:
            equity.add_metric(labels, float(item.equity))
        warned.add_metric(labels, int(item.warned))
        blocked.add_metric(labels, int(item.blocked))
        halted.add_metric(labels, int(item.halted))
        if item.day_pnl is not None:
            day_pnl.add_metric(labels, float(item.day_pnl))
        if item.max_daily_loss is not None:
            max_loss.add_metric(labels, float(item.max_daily_loss))
        reached = item.day is not None and item.loss_day == item.day
        loss_hit.add_metric(labels, int(reached))
    yield from (heat, warn, block, risk, equity, warned, blocked, halted, day_pnl, max_loss)
    yield loss_hit


__all__ = ["account_families", "fleet_families", "session_families"]
