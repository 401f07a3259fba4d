"""Portfolio heat: the arithmetic and the decisions, pure (no I/O, no clock).

A session's open risk is what it loses if its position is stopped out:
``|position| x multiplier x |price - stop|``. The stop is the strategy's (the signal's stop
price, later the position's resting stop); a position without one is charged a default
per-contract distance of ``k x ATR`` (the mean true range of the last ``periods`` closed
candles, ``default_stop_distance``), so an unprotected position is never counted as riskless.

An account's heat is the sum of its sessions' open risk divided by its equity (the broker's
cash). Levels (fractions of equity): above ``heat_warn`` the account is *warned* (set once per
crossing, cleared only below ``heat_warn - hysteresis``); at or above ``heat_block`` it is
*blocked*. An entry is accepted only if the account's total risk with the session's new risk
stays within ``heat_block x equity``; exits and reductions always pass.

The shared state lives in Redis (``workers.risk``) where one Lua script does the check and the
reservation at once, in integers: risk and equity in cents (risk rounded up, equity down, so
rounding never lets an entry in) and levels in parts per million. ``to_cents`` / ``to_ppm`` are
the conversions, and ``entry_fits`` / ``next_warned`` / ``is_blocked`` here are the exact
integer rules the script applies.

At a closed candle (``trading.decision``) only a signal with an ENTRY intent is checked: the
session's whole open risk after the signal (its target position times the per-contract risk:
to the signal's stop, or ``k x ATR`` without one) is checked and reserved at once through an
``EntryGate`` (``check_entry``); a refused entry is dropped with an event and the exits of the
same signal still go, so a refused reversal goes flat. A moved stop re-measures the position's
risk, never refused (``risk_after_move``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal, Protocol

from trading.events import Event
from trading.intents import OrderIntent
from trading.market import Candle

PPM = 1_000_000
CENT = Decimal("0.01")
BlockReason = Literal["heat", "halted", "daily_loss", "no_equity", "max_position"]


@dataclass(frozen=True, slots=True)
class RiskLevels:
    """An account's limits: heat levels as fractions of equity, and the daily loss limit.

    ``max_daily_loss`` None means no daily limit.
    """

    heat_warn: Decimal
    heat_block: Decimal
    hysteresis: Decimal = Decimal("0.01")
    max_daily_loss: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("heat_warn", "heat_block", "hysteresis"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(f"{name} must be a finite Decimal >= 0, got {value!r}")
        if self.heat_warn > self.heat_block:
            raise ValueError(
                f"heat_warn {self.heat_warn} must not exceed heat_block {self.heat_block}"
            )
        if self.hysteresis > self.heat_warn:
            raise ValueError(f"hysteresis {self.hysteresis} exceeds heat_warn {self.heat_warn}")
        loss = self.max_daily_loss
        if loss is not None and (not loss.is_finite() or loss <= 0):
            raise ValueError(f"max_daily_loss must be > 0, got {loss!r}")


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    """How a session's risk is measured at entry: the default stop distance (``atr_mult`` x
    the mean true range of ``atr_periods`` candles) and its maximum position (0 = none)."""

    atr_mult: Decimal = Decimal(2)
    atr_periods: int = 14
    max_position: int = 0


@dataclass(frozen=True, slots=True)
class RiskAnswer:
    """The account's state after a check (and reservation) of one session's risk.

    ``reason`` is empty when accepted, else a ``BlockReason``; ``warn_change`` is 1 when this
    change set the warned flag, -1 when it cleared it, else 0.
    """

    accepted: bool
    reason: str
    total: Decimal
    equity: Decimal | None
    warned: bool
    blocked: bool
    warn_change: int
    heat_warn: Decimal
    heat_block: Decimal

    @property
    def heat(self) -> Decimal:
        return heat([self.total], self.equity if self.equity is not None else Decimal(0))


class EntryGate(Protocol):
    """Checks and reserves a session's new open risk on its account (one atomic step)."""

    @property
    def policy(self) -> RiskPolicy: ...

    def reserve(
        self,
        account: str,
        session_id: str,
        risk: Decimal,
        per_contract: Decimal,
        balance: Decimal | None,
        trade_date: str,
    ) -> RiskAnswer:
        """Reserve ``risk`` (the session's whole open risk after the entry) if it fits."""
        ...

    def set_position(
        self,
        account: str,
        session_id: str,
        quantity: int,
        per_contract: Decimal | None,
        equity: Decimal | None,
    ) -> RiskAnswer:
        """The session's open risk is now ``quantity`` contracts at ``per_contract`` each
        (always accepted: a moved stop, an exit)."""
        ...


def position_risk(
    quantity: int, multiplier: Decimal, price: Decimal, stop: Decimal | None, default: Decimal
) -> Decimal:
    """Open risk of a signed position: ``|quantity| x multiplier x distance``.

    ``distance`` is ``|price - stop|`` or, without a stop, ``default`` (a price distance).
    """
    distance = abs(price - stop) if stop is not None else abs(default)
    return abs(quantity) * multiplier * distance


def default_stop_distance(candles: Sequence[Candle], k: Decimal, periods: int) -> Decimal:
    """``k x`` the mean true range of the last ``periods`` candles (0 with no candle).

    True range: ``max(high, previous close) - min(low, previous close)`` (just high - low for
    the first candle considered).
    """
    if periods < 1:
        raise ValueError(f"periods must be >= 1, got {periods}")
    window = list(candles[-(periods + 1) :])
    ranges: list[Decimal] = []
    for index, candle in enumerate(window):
        if index == 0 and len(window) > periods:
            continue
        previous = window[index - 1].close if index > 0 else None
        high = candle.high if previous is None else max(candle.high, previous)
        low = candle.low if previous is None else min(candle.low, previous)
        ranges.append(high - low)
    if not ranges:
        return Decimal(0)
    return k * sum(ranges, Decimal(0)) / len(ranges)


def to_cents(amount: Decimal, *, up: bool) -> int:
    """Money as integer cents, rounded up (risk: never under-counted) or down (equity)."""
    rounding = ROUND_CEILING if up else ROUND_FLOOR
    return int(amount.quantize(CENT, rounding=rounding) * 100)


def to_ppm(fraction: Decimal) -> int:
    """A fraction of equity in parts per million (rounded down: a level never loosens)."""
    return int((fraction * PPM).to_integral_value(rounding=ROUND_FLOOR))


def heat(risks: Iterable[Decimal], equity: Decimal) -> Decimal:
    """Account heat: total open risk / equity (``Decimal('Infinity')`` with no equity)."""
    total = sum(risks, Decimal(0))
    if equity <= 0:
        return Decimal(0) if total == 0 else Decimal("Infinity")
    return total / equity


def entry_fits(others_cents: int, new_cents: int, equity_cents: int, block_ppm: int) -> bool:
    """Whether the session's new risk fits beside the others' within the block level."""
    if equity_cents <= 0:
        return False
    return (others_cents + new_cents) * PPM <= block_ppm * equity_cents


def next_warned(
    warned: bool, total_cents: int, equity_cents: int, warn_ppm: int, hysteresis_ppm: int
) -> bool:
    """The warned flag after a change: set at/above warn, cleared below warn - hysteresis."""
    if equity_cents <= 0:
        return total_cents > 0 or warned
    scaled = total_cents * PPM
    if not warned:
        return scaled >= warn_ppm * equity_cents and total_cents > 0
    return scaled >= (warn_ppm - hysteresis_ppm) * equity_cents


def is_blocked(total_cents: int, equity_cents: int, block_ppm: int) -> bool:
    """At or above the block level (with some risk): no entry can fit."""
    if equity_cents <= 0:
        return total_cents > 0
    return total_cents > 0 and total_cents * PPM >= block_ppm * equity_cents


def daily_loss_reached(realized_today: Decimal, max_daily_loss: Decimal | None) -> bool:
    """Whether today's realized P&L (negative is a loss) has reached the daily limit."""
    return max_daily_loss is not None and -realized_today >= max_daily_loss


def within_max_position(target: int, max_position: int) -> bool:
    """Whether ``|target|`` respects a session's maximum (0 = no maximum)."""
    return max_position <= 0 or abs(target) <= max_position


def has_entry(intents: Sequence[OrderIntent]) -> bool:
    return any(intent.intent == "entry" for intent in intents)


def without_entries(intents: Sequence[OrderIntent]) -> list[OrderIntent]:
    """What a refused signal still sends: its exits (a reversal becomes an exit to flat)."""
    return [intent for intent in intents if intent.intent != "entry"]


@dataclass(frozen=True, slots=True)
class EntryCheck:
    """One signal's entry: the target position, its stop, the candles up to now, data time."""

    target: int
    stop_price: Decimal | None
    candles: Sequence[Candle]
    now: datetime


@dataclass(slots=True)
class GateOutcome:
    """What a signal keeps after the gate (``intents``), the gate's ``answer`` (None when it
    was not asked) and the events to record."""

    intents: list[OrderIntent]
    answer: RiskAnswer | None = None
    events: list[Event] = field(default_factory=list)


def per_contract_risk(
    policy: RiskPolicy, multiplier: Decimal, stop: Decimal | None, candles: Sequence[Candle]
) -> Decimal:
    """Risk of one contract entered at the last close: to ``stop``, or ``k x ATR``."""
    price = candles[-1].close
    if stop is not None:
        distance = abs(price - stop)
    else:
        distance = default_stop_distance(candles, policy.atr_mult, policy.atr_periods)
    return distance * multiplier


def warn_event(answer: RiskAnswer, account: str) -> Event | None:
    """The event of a warn-level crossing (once per crossing), or None."""
    details = {"account": account, "heat": str(answer.heat), "warn": str(answer.heat_warn)}
    if answer.warn_change > 0:
        return Event("risk", "warning", f"account {account} heat reached the warn level", details)
    if answer.warn_change < 0:
        return Event("risk", "info", f"account {account} heat back below the warn level", details)
    return None


def check_entry(
    gate: EntryGate,
    account: str,
    session_id: str,
    multiplier: Decimal,
    balance: Decimal | None,
    intents: list[OrderIntent],
    check: EntryCheck,
) -> GateOutcome:
    """The intents of one signal that pass the gate: all of them without an entry; else the
    entry's risk is reserved, and a refusal (or a target past the maximum position) drops the
    entry with an event (see the module)."""
    if not has_entry(intents):
        return GateOutcome(intents)
    base = {"account": account, "target": check.target, "at": check.now.isoformat()}
    if not within_max_position(check.target, gate.policy.max_position):
        message = f"entry refused: target {check.target} exceeds the maximum position"
        detail = {**base, "reason": "max_position", "max": gate.policy.max_position}
        return GateOutcome(
            without_entries(intents), events=[Event("risk", "warning", message, detail)]
        )
    per_contract = per_contract_risk(gate.policy, multiplier, check.stop_price, check.candles)
    risk = abs(check.target) * per_contract
    answer = gate.reserve(
        account, session_id, risk, per_contract, balance, check.now.date().isoformat()
    )
    outcome = GateOutcome(intents, answer)
    crossing = warn_event(answer, account)
    if crossing is not None:
        outcome.events.append(crossing)
    if not answer.accepted:
        message = f"entry refused: {answer.reason} (heat {answer.heat:.4f}, risk {risk})"
        detail = {**base, "reason": answer.reason, "risk": str(risk), "heat": str(answer.heat)}
        outcome.events.append(Event("risk", "warning", message, detail))
        outcome.intents = without_entries(intents)
    return outcome


def refuse_entries_while_stalled(
    intents: list[OrderIntent], contract: str, now: datetime
) -> GateOutcome:
    """The market data of ``contract`` stalled in market hours: an entry is refused (with an
    event), exits and reductions pass, whatever the data does."""
    if not has_entry(intents):
        return GateOutcome(intents)
    message = f"entry refused: market data of {contract} stalled"
    detail = {"contract": contract, "reason": "feed_stalled", "at": now.isoformat()}
    return GateOutcome(without_entries(intents), events=[Event("risk", "warning", message, detail)])


def risk_after_move(
    gate: EntryGate,
    account: str,
    session_id: str,
    multiplier: Decimal,
    balance: Decimal | None,
    position: int,
    stop: Decimal,
    close: Decimal,
) -> GateOutcome:
    """The strategy moved the stop of the ``position`` it holds: its open risk on the account
    is measured to the new stop from the last close (a tighter stop frees heat, a looser one
    takes more; a move is never refused, like an exit)."""
    per_contract = abs(close - stop) * multiplier
    answer = gate.set_position(account, session_id, position, per_contract, balance)
    outcome = GateOutcome([], answer)
    crossing = warn_event(answer, account)
    if crossing is not None:
        outcome.events.append(crossing)
    return outcome


__all__ = [
    "PPM",
    "BlockReason",
    "EntryCheck",
    "EntryGate",
    "GateOutcome",
    "RiskAnswer",
    "RiskLevels",
    "RiskPolicy",
    "check_entry",
    "daily_loss_reached",
    "default_stop_distance",
    "entry_fits",
    "has_entry",
    "heat",
    "is_blocked",
    "next_warned",
    "per_contract_risk",
    "position_risk",
    "refuse_entries_while_stalled",
    "risk_after_move",
    "to_cents",
    "to_ppm",
    "warn_event",
    "within_max_position",
    "without_entries",
]
