"""What the operations console says about a session and an account: pure, time is an argument.

``session_status`` turns what the stores hold about one session into one status word and the
reasons behind it; ``broker_check`` compares the sessions' positions with the broker's as
reconciliation last saw it; ``account_totals`` adds up the figures shown per session.

Status words, the first that applies wins (every one that applies is in the reasons):

- ``stopped``: the session's SQL row is ``stopped``.
- ``needs_operator``: a person must look: its unfinished roll is ``needs_operator`` or
  ``failed``; or it has no state in Redis (recovery must rebuild it); or it is not trading
  and not rolling (a strategy error, an aborted roll: it waits for a restart); or its
  position is ambiguous against the broker (it shares an account and contract, and the sum
  disagrees).
- ``halted``: its account's halted flag is set (the kill switch: entries refused).
- ``stale``: its data or its broker are not current: the feed of its contract is flagged
  stalled (``workers.feeds.stall``), or no tick came for longer than ``stale_after`` while
  the market is open (its last tick's data time, or its creation before any tick), or the
  broker failed the last position check (reconciliation marked it stale).
- ``rolling``: a roll is running (the strategy does not run).
- ``trading``: none of the above.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

Status = Literal["trading", "rolling", "halted", "stale", "stopped", "needs_operator"]
STATUSES: tuple[Status, ...] = (
    "stopped",
    "needs_operator",
    "halted",
    "stale",
    "rolling",
    "trading",
)
"""Every status word, the first that applies wins."""

BrokerCheck = Literal["match", "mismatch", "unverified", "unknown"]
"""``match``/``mismatch``: the broker's last seen position equals / differs from the sum of
the sessions' positions in that account and contract; ``unverified``: a fill was applied
to one of them after the broker was read, or the broker had fills not yet given to the
sessions (the comparison waits for the next check); ``unknown``: never seen."""


@dataclass(frozen=True, slots=True)
class StatusInputs:
    """What the stores hold about one session, as the status rule needs it."""

    sql_status: str
    has_state: bool
    trading: bool
    rolling: bool
    account_halted: bool
    roll_status: str | None
    """The status of its unfinished roll (``running``, ``failed``, ``needs_operator``)."""
    ambiguous: bool
    broker_failing: bool
    feed_stalled: bool
    last_tick: datetime | None
    """The data time of its last tick, None before any."""
    created_at: datetime
    market_open: bool
    live_feed: bool
    """Its feed prints a market as it trades (a replay's ticks carry their data's old times:
    the no-tick rule does not apply to it)."""


def session_status(
    inputs: StatusInputs, now: datetime, stale_after: timedelta
) -> tuple[Status, tuple[str, ...]]:
    """The session's status word and every reason that applies (module docstring)."""
    found: list[tuple[Status, str]] = []
    if inputs.sql_status == "stopped":
        found.append(("stopped", "stopped"))
    if inputs.roll_status in {"needs_operator", "failed"}:
        found.append(("needs_operator", f"roll {inputs.roll_status.replace('_', ' ')}"))
    if not inputs.has_state:
        found.append(("needs_operator", "no state in Redis (needs recovery)"))
    elif not inputs.trading and not inputs.rolling:
        found.append(("needs_operator", "not trading"))
    if inputs.ambiguous:
        found.append(("needs_operator", "position ambiguous at the broker"))
    if inputs.account_halted:
        found.append(("halted", "account halted"))
    if inputs.feed_stalled:
        found.append(("stale", "feed stalled"))
    since = inputs.last_tick if inputs.last_tick is not None else inputs.created_at
    if inputs.live_feed and inputs.market_open and now - since > stale_after:
        quiet = duration_text(int((now - since).total_seconds()))
        found.append(
            ("stale", f"no tick for {quiet}" if inputs.last_tick else f"no tick in {quiet}")
        )
    if inputs.broker_failing:
        found.append(("stale", "broker not answering"))
    if inputs.rolling:
        found.append(("rolling", "roll running"))
    if not found:
        return "trading", ()
    status = min((s for s, _ in found), key=STATUSES.index)
    return status, tuple(reason for _, reason in found)


def duration_text(seconds: int) -> str:
    """``12 s``, ``5 min``, ``3 h``, ``12 d`` (whole units, rounded down)."""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7_200:
        return f"{seconds // 60} min"
    if seconds < 172_800:
        return f"{seconds // 3_600} h"
    return f"{seconds // 86_400} d"


def broker_check(
    local_total: int,
    broker_quantity: int | None,
    broker_as_of: datetime | None,
    fills_pending: int,
    last_fill: datetime | None,
) -> BrokerCheck:
    """The sessions' summed position in one account and contract against the broker's last
    seen one (``BrokerCheck``)."""
    if broker_quantity is None or broker_as_of is None:
        return "unknown"
    if fills_pending or (last_fill is not None and last_fill > broker_as_of):
        return "unverified"
    return "match" if broker_quantity == local_total else "mismatch"


@dataclass(frozen=True, slots=True)
class SessionFigures:
    """The figures shown for one session that add up per account."""

    account: str
    position: int
    realized: Decimal
    unrealized: Decimal
    commissions: Decimal
    risk: Decimal
    heat: Decimal


@dataclass(frozen=True, slots=True)
class AccountTotals:
    """Exact sums of the shown figures of an account's sessions."""

    account: str
    sessions: int
    position: int
    realized: Decimal
    unrealized: Decimal
    commissions: Decimal
    risk: Decimal
    heat: Decimal


def account_totals(figures: Iterable[SessionFigures]) -> dict[str, AccountTotals]:
    """Per account, in account order: the Decimal sums of its sessions' figures."""
    totals: dict[str, AccountTotals] = {}
    for f in figures:
        t = totals.get(f.account) or AccountTotals(
            f.account, 0, 0, Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal(0)
        )
        totals[f.account] = AccountTotals(
            account=f.account,
            sessions=t.sessions + 1,
            position=t.position + f.position,
            realized=t.realized + f.realized,
            unrealized=t.unrealized + f.unrealized,
            commissions=t.commissions + f.commissions,
            risk=t.risk + f.risk,
            heat=t.heat + f.heat,
        )
    return dict(sorted(totals.items()))


__all__ = [
    "STATUSES",
    "AccountTotals",
    "BrokerCheck",
    "SessionFigures",
    "Status",
    "StatusInputs",
    "account_totals",
    "broker_check",
    "duration_text",
    "session_status",
]
