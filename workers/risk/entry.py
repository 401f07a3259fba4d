"""The tick path's risk check of one signal's entry (called by ``workers.ticks.step``).

Only a signal with an ENTRY intent gets here (one round trip to the account's risk hash); exits
never wait for anything. The session's whole open risk after the signal (its target position
times the per-contract risk: to the signal's stop, or ``k x ATR`` without one) is checked and
reserved at once by ``RiskBook.reserve``. A refused entry is dropped with an event; the exits
of the same signal still go, so a refused reversal goes flat.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from models.codec import encode_field
from models.state import ContractDetails
from models.tables import Severity
from trading.intents import OrderIntent
from trading.market import Candle
from trading.risk import (
    EntryGate,
    RiskAnswer,
    default_stop_distance,
    has_entry,
    within_max_position,
    without_entries,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EntryCheck:
    """One signal's entry: the target position, its stop, the candles up to now, data time."""

    target: int
    stop_price: Decimal | None
    candles: Sequence[Candle]
    now: datetime


@dataclass(slots=True)
class EntryOutcome:
    intents: list[OrderIntent]
    fields: dict[str, str] = field(default_factory=dict)
    events: list[tuple[Severity, str, dict[str, Any]]] = field(default_factory=list)


def per_contract_risk(
    gate: EntryGate, details: ContractDetails, stop: Decimal | None, candles: Sequence[Candle]
) -> Decimal:
    """Risk of one contract entered at the last close: to ``stop``, or ``k x ATR``."""
    price = candles[-1].close
    if stop is not None:
        distance = abs(price - stop)
    else:
        policy = gate.policy
        distance = default_stop_distance(candles, policy.atr_mult, policy.atr_periods)
    return distance * details.multiplier


def heat_fields(answer: RiskAnswer) -> dict[str, str]:
    """The session's working copies of its account's heat and flags."""
    return {
        "portfolio_heat": encode_field("portfolio_heat", answer.heat.quantize(Decimal("0.000001"))),
        "portfolio_heat_warned": encode_field("portfolio_heat_warned", answer.warned),
        "portfolio_heat_blocked": encode_field("portfolio_heat_blocked", answer.blocked),
    }


def warn_event(answer: RiskAnswer, account: str) -> tuple[Severity, str, dict[str, Any]] | None:
    """The event of a warn-level crossing (once per crossing), or None."""
    details = {"account": account, "heat": str(answer.heat), "warn": str(answer.heat_warn)}
    if answer.warn_change > 0:
        log.warning(
            "account %s: heat %s reached the warn level %s", account, answer.heat, answer.heat_warn
        )
        return "warning", f"account {account} heat reached the warn level", details
    if answer.warn_change < 0:
        return "info", f"account {account} heat back below the warn level", details
    return None


def check_entry(
    gate: EntryGate,
    account: str,
    session_id: str,
    details: ContractDetails,
    balance: Decimal | None,
    intents: list[OrderIntent],
    check: EntryCheck,
) -> EntryOutcome:
    if not has_entry(intents):
        return EntryOutcome(intents)
    base = {"account": account, "target": check.target, "at": check.now.isoformat()}
    if not within_max_position(check.target, gate.policy.max_position):
        message = f"entry refused: target {check.target} exceeds the maximum position"
        log.warning("session %s: %s", session_id, message)
        detail = {**base, "reason": "max_position", "max": gate.policy.max_position}
        return EntryOutcome(without_entries(intents), events=[("warning", message, detail)])
    per_contract = per_contract_risk(gate, details, check.stop_price, check.candles)
    risk = abs(check.target) * per_contract
    answer = gate.reserve(
        account, session_id, risk, per_contract, balance, check.now.date().isoformat()
    )
    outcome = EntryOutcome(intents, fields=heat_fields(answer))
    crossing = warn_event(answer, account)
    if crossing is not None:
        outcome.events.append(crossing)
    if not answer.accepted:
        message = f"entry refused: {answer.reason} (heat {answer.heat:.4f}, risk {risk})"
        log.warning("session %s: %s", session_id, message)
        detail = {**base, "reason": answer.reason, "risk": str(risk), "heat": str(answer.heat)}
        outcome.events.append(("warning", message, detail))
        outcome.intents = without_entries(intents)
    return outcome


def risk_after_move(
    gate: EntryGate,
    account: str,
    session_id: str,
    details: ContractDetails,
    balance: Decimal | None,
    position: int,
    stop: Decimal,
    close: Decimal,
) -> EntryOutcome:
    """The strategy moved the stop of the ``position`` it holds: its open risk on the account
    is measured to the new stop from the last close (a tighter stop frees heat, a looser one
    takes more; a move is never refused, like an exit)."""
    per_contract = abs(close - stop) * details.multiplier
    answer = gate.set_position(account, session_id, position, per_contract, balance)
    outcome = EntryOutcome([], fields=heat_fields(answer))
    crossing = warn_event(answer, account)
    if crossing is not None:
        outcome.events.append(crossing)
    return outcome


__all__ = [
    "EntryCheck",
    "EntryOutcome",
    "check_entry",
    "heat_fields",
    "per_contract_risk",
    "risk_after_move",
]
