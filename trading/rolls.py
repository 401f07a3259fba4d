"""Contract rolls (pure): the plan, what the broker's answers say, and candle back-adjustment.

A roll moves a session's signed position ``quantity`` from ``from_contract`` to
``to_contract`` in steps (``STEPS``): begin (the strategy stops) → close (a market order for
the exact quantity) → await its fill → open (the same signed quantity in the new contract) →
await its fill → switch the session's contract (candles back-adjusted by the roll spread) →
end. A flat session (quantity 0) only switches.

Every order-touching step decides from the BROKER's answers, never from local memory alone:
``assess`` reads the close and open orders (by their deterministic client order ids) and the
account's positions in both contracts, and names the roll's phase. ``decide`` then says, for
the step being run, whether to send its order, wait, move on, or stop for the operator. A
phase the answers do not pin down (positions that match no point of the plan, an order
cancelled or rejected, an open without a filled close) is ``AMBIGUOUS``: the roll stops.

Back-adjustment: every candle of the old contract is shifted by the roll spread (new fill price
minus old fill price), so differences between candles, and therefore the strategy's indicators
(moving averages, channels, ATR), continue across the roll as if the history had been traded
in the new contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from trading.calendar import HolidayProvider, in_roll_window, next_contract
from trading.contracts import parse_symbol
from trading.exceptions import BadInput
from trading.market import Candle

RollStepName = Literal["begin", "close", "await_close", "open", "await_open", "switch", "end"]
STEPS: tuple[RollStepName, ...] = (
    "begin",
    "close",
    "await_close",
    "open",
    "await_open",
    "switch",
    "end",
)
"""The steps of a roll, in order; after ``end`` a roll's step is ``done``."""
ORDER_STEPS: frozenset[str] = frozenset({"close", "await_close", "open", "await_open"})
"""Steps that trade; a flat roll passes through them without asking the broker anything."""
DONE = "done"

BrokerStatus = Literal["working", "filled", "cancelled", "rejected", "unknown"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def next_step(step: str) -> str:
    """The step after ``step`` (``done`` after ``end``)."""
    if step not in STEPS:
        raise BadInput(f"unknown roll step {step!r} (steps: {', '.join(STEPS)})")
    index = STEPS.index(step)
    return STEPS[index + 1] if index + 1 < len(STEPS) else DONE


def steps_from(step: str) -> tuple[RollStepName, ...]:
    """The steps still to run when the roll's next step is ``step`` (none once ``done``)."""
    if step == DONE:
        return ()
    if step not in STEPS:
        raise BadInput(f"unknown roll step {step!r} (steps: {', '.join(STEPS)})")
    return STEPS[STEPS.index(step) :]


def close_order_id(roll_id: int) -> str:
    """The deterministic client order id of a roll's close: the same after any retry."""
    return f"roll-{_checked_id(roll_id)}-close"


def open_order_id(roll_id: int) -> str:
    """The deterministic client order id of a roll's open."""
    return f"roll-{_checked_id(roll_id)}-open"


ROLL_ORDER_PREFIX = "roll-"
"""Every roll order's client order id starts with it (``close_order_id``, ``open_order_id``)."""
_AWAIT_OF_ORDER: Mapping[str, RollStepName] = MappingProxyType(
    {"close": "await_close", "open": "await_open"}
)


def await_step_of(client_order_id: str) -> tuple[int, RollStepName] | None:
    """The roll and the step that awaits the fill of a roll order (``roll-7-close`` → (7,
    ``await_close``)); None for any other client order id."""
    if not client_order_id.startswith(ROLL_ORDER_PREFIX):
        return None
    number, _, kind = client_order_id[len(ROLL_ORDER_PREFIX) :].partition("-")
    step = _AWAIT_OF_ORDER.get(kind)
    if step is None or not (number.isascii() and number.isdigit()) or number[0] == "0":
        return None
    return int(number), step


def _checked_id(roll_id: int) -> int:
    if isinstance(roll_id, bool) or not isinstance(roll_id, int) or roll_id < 1:
        raise BadInput(f"roll id must be a positive int, got {roll_id!r}")
    return roll_id


def roll_target(contract: str, to: str | None = None) -> str:
    """The contract a session on ``contract`` rolls to: ``to`` if given (same product, another
    contract), else the next listed one (ESZ13 → ESH14)."""
    if to is None:
        return next_contract(contract)
    target = to.strip().upper()
    if parse_symbol(target).product != parse_symbol(contract).product:
        raise BadInput(f"cannot roll {contract} into {target}: another product")
    if target == contract:
        raise BadInput(f"cannot roll {contract} into itself")
    return target


def session_clock(last_ms: int | None, wall: datetime) -> datetime:
    """The session's clock: the data time of the last tick it processed (replay), else the wall
    clock (a session that has seen no tick yet)."""
    if last_ms is None:
        return wall.astimezone(UTC)
    return _EPOCH + timedelta(milliseconds=last_ms)


def decision_time(last_ms: int | None, wall: datetime) -> datetime:
    """When a roll decided now is decided: just after the last tick the session saw (so its
    market orders fill on the next print, never on one already seen), or the wall clock."""
    if last_ms is None:
        return wall.astimezone(UTC)
    return session_clock(last_ms, wall) + timedelta(milliseconds=1)


def should_roll(
    contract: str, clock: datetime, holidays: HolidayProvider, window_days: int
) -> bool:
    """Whether a session holding ``contract`` should roll at ``clock`` (its own clock, UTC day)."""
    return in_roll_window(contract, clock.astimezone(UTC).date(), holidays, window_days)


@dataclass(frozen=True, slots=True)
class RollPlan:
    """What one roll does: move ``quantity`` (signed) from one contract to the next."""

    roll_id: int
    session_id: str
    from_contract: str
    to_contract: str
    quantity: int

    def __post_init__(self) -> None:
        _checked_id(self.roll_id)
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise BadInput(f"roll quantity must be an int, got {self.quantity!r}")
        roll_target(self.from_contract, self.to_contract)

    @property
    def flat(self) -> bool:
        return self.quantity == 0

    @property
    def sign(self) -> int:
        return 1 if self.quantity > 0 else -1

    @property
    def close_side(self) -> Literal["buy", "sell"]:
        return "sell" if self.quantity > 0 else "buy"

    @property
    def open_side(self) -> Literal["buy", "sell"]:
        return "buy" if self.quantity > 0 else "sell"

    @property
    def close_id(self) -> str:
        return close_order_id(self.roll_id)

    @property
    def open_id(self) -> str:
        return open_order_id(self.roll_id)


@dataclass(frozen=True, slots=True)
class OrderFact:
    """What the broker answered about one roll order (None when it has no such order)."""

    status: BrokerStatus
    quantity: int
    filled_quantity: int
    average_fill_price: Decimal | None


class Phase(StrEnum):
    """Where a roll stands, according to the broker."""

    FLAT = "flat"
    """Nothing to trade: the plan's quantity is 0 and the broker holds neither contract."""
    NEED_CLOSE = "need_close"
    CLOSE_WORKING = "close_working"
    NEED_OPEN = "need_open"
    OPEN_WORKING = "open_working"
    OPENED = "opened"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True, slots=True)
class Assessment:
    phase: Phase
    reason: str = ""
    close_price: Decimal | None = None
    open_price: Decimal | None = None


def _live(fact: OrderFact | None) -> OrderFact | None:
    return None if fact is None or fact.status == "unknown" else fact


def assess(
    plan: RollPlan,
    close: OrderFact | None,
    open_: OrderFact | None,
    positions: Mapping[str, int],
) -> Assessment:
    """The roll's phase from the broker's answers: its close and open orders (None: the broker
    has none) and the account's signed positions (flat contracts may be omitted)."""
    old = positions.get(plan.from_contract, 0)
    new = positions.get(plan.to_contract, 0)
    close, open_ = _live(close), _live(open_)
    if plan.flat:
        if close is not None or open_ is not None:
            return _ambiguous("a flat roll has orders at the broker")
        if old or new:
            return _ambiguous(
                f"the session is flat but the broker holds {plan.from_contract} {old}, "
                f"{plan.to_contract} {new}"
            )
        return Assessment(Phase.FLAT)
    for name, fact in (("close", close), ("open", open_)):
        if fact is None:
            continue
        if fact.status in ("cancelled", "rejected"):
            return _ambiguous(f"the roll's {name} order is {fact.status} at the broker")
        if fact.quantity != abs(plan.quantity) or not 0 <= fact.filled_quantity <= fact.quantity:
            return _ambiguous(
                f"the roll's {name} order is for {fact.quantity} (filled "
                f"{fact.filled_quantity}), the plan for {abs(plan.quantity)}"
            )
    if open_ is not None and (close is None or close.status != "filled"):
        return _ambiguous("the broker holds the roll's open order but its close is not filled")
    closed = 0 if close is None else close.filled_quantity
    opened = 0 if open_ is None else open_.filled_quantity
    expected_old = plan.quantity - plan.sign * closed
    expected_new = plan.sign * opened
    if (old, new) != (expected_old, expected_new):
        return _ambiguous(
            f"the broker holds {plan.from_contract} {old} and {plan.to_contract} {new}; "
            f"the roll expects {expected_old} and {expected_new}"
        )
    if close is None:
        return Assessment(Phase.NEED_CLOSE)
    if close.status == "working":
        return Assessment(Phase.CLOSE_WORKING)
    if close.average_fill_price is None:
        return _ambiguous("the roll's close is filled without a fill price")
    if open_ is None:
        return Assessment(Phase.NEED_OPEN, close_price=close.average_fill_price)
    if open_.status == "working":
        return Assessment(Phase.OPEN_WORKING, close_price=close.average_fill_price)
    if open_.average_fill_price is None:
        return _ambiguous("the roll's open is filled without a fill price")
    return Assessment(
        Phase.OPENED, close_price=close.average_fill_price, open_price=open_.average_fill_price
    )


def _ambiguous(reason: str) -> Assessment:
    return Assessment(Phase.AMBIGUOUS, reason)


class Action(StrEnum):
    """What a step does after ``assess``."""

    SEND = "send"
    """Send this step's order (the broker has none with its client order id)."""
    WAIT = "wait"
    """Try again later (bounded): the order is working."""
    DONE = "done"
    """This step's work is done (perhaps by an earlier, interrupted run): move on."""
    STOP = "stop"
    """The answers contradict the plan or this step: stop the roll for the operator."""


_P = Phase
DECISIONS: Mapping[tuple[str, Phase], Action] = MappingProxyType(
    {
        ("begin", _P.FLAT): Action.DONE,
        ("begin", _P.NEED_CLOSE): Action.DONE,
        ("close", _P.NEED_CLOSE): Action.SEND,
        ("close", _P.CLOSE_WORKING): Action.DONE,
        ("close", _P.NEED_OPEN): Action.DONE,
        ("close", _P.OPEN_WORKING): Action.DONE,
        ("close", _P.OPENED): Action.DONE,
        ("await_close", _P.CLOSE_WORKING): Action.WAIT,
        ("await_close", _P.NEED_OPEN): Action.DONE,
        ("await_close", _P.OPEN_WORKING): Action.DONE,
        ("await_close", _P.OPENED): Action.DONE,
        ("open", _P.NEED_OPEN): Action.SEND,
        ("open", _P.OPEN_WORKING): Action.DONE,
        ("open", _P.OPENED): Action.DONE,
        ("await_open", _P.OPEN_WORKING): Action.WAIT,
        ("await_open", _P.OPENED): Action.DONE,
    }
)
"""Every (step, phase) pair that lets the roll go on; any other pair is ``STOP``. In
particular: only ``close`` sends the close and only while the broker has neither roll order
and the old position is whole; only ``open`` sends the open and only after the close filled
and while the new contract is still flat; a missing order at an await step, or a phase behind
the step (the close not filled at ``open``), stops the roll."""


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str = ""


def decide(step: str, assessment: Assessment) -> Decision:
    """What ``step`` does given the broker's answers (see ``DECISIONS``)."""
    if step not in STEPS:
        raise BadInput(f"unknown roll step {step!r} (steps: {', '.join(STEPS)})")
    if assessment.phase is Phase.AMBIGUOUS:
        return Decision(Action.STOP, assessment.reason)
    action = DECISIONS.get((step, assessment.phase))
    if action is None:
        return Decision(
            Action.STOP, f"step {step} cannot go on: the broker says the roll is {assessment.phase}"
        )
    return Decision(action)


def roll_spread(close_price: Decimal, open_price: Decimal) -> Decimal:
    """The roll spread: the new contract's fill price minus the old contract's."""
    return open_price - close_price


def adjust_candle(candle: Candle, spread: Decimal) -> Candle:
    """``candle`` with every price shifted by ``spread`` (volume and time unchanged)."""
    return replace(
        candle,
        open=candle.open + spread,
        high=candle.high + spread,
        low=candle.low + spread,
        close=candle.close + spread,
    )


def back_adjust(candles: Sequence[Candle], spread: Decimal) -> tuple[Candle, ...]:
    """The old contract's candles as if traded in the new one: every price plus ``spread``."""
    return tuple(adjust_candle(candle, spread) for candle in candles)


def adjust_price(price: Decimal | None, spread: Decimal) -> Decimal | None:
    """A price level of the old contract (a stop) in the new contract's terms."""
    return None if price is None else price + spread
