"""The candle-close decision (``trading.decision``) on plain values: no Redis, no SQL.

Strategies here are scripted (each call answers the next planned signals) and the risk gate is
an in-memory one, so each test states exactly what the strategy asked and what the gate
answered, and checks what the session decides: its orders and their ids, its stop moves, its
events and its strategy state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading.decision import CloseInputs, Decision, decide_at_close
from trading.intents import client_order_id
from trading.market import Candle, Tick
from trading.orders import Order
from trading.risk import RiskAnswer, RiskPolicy
from trading.stops import StopOut, attached_stop_id, move_stop_id
from trading.strategies import JsonObject, JsonValue, Signal, Strategy, StrategyContext

SID = "7a1b2c3d-0000-4000-8000-00000000d001"
T0 = datetime(2013, 10, 7, 13, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
MULT = Decimal(50)


def candle(minute: int, close: str) -> Candle:
    price = Decimal(close)
    return Candle(T0 + minute * MINUTE, price, price + 1, price - 1, price, 10)


def end_of(minute: int) -> datetime:
    return T0 + (minute + 1) * MINUTE


@dataclass(frozen=True, slots=True)
class Held:
    """A position (``trading.orders.PositionView``)."""

    contract: str = "ESZ13"
    quantity: int = 0
    stop_price: Decimal | None = None
    opened_at: datetime | None = T0 - MINUTE


class Scripted:
    """A strategy that answers ``plan[n]`` at its n-th call (then nothing), counting its calls
    in its state; ``fail_at`` makes that call raise."""

    name = "scripted"

    def __init__(self, *plan: list[Signal], fail_at: int | None = None) -> None:
        self.plan = plan
        self.fail_at = fail_at
        self.seen: list[StrategyContext] = []

    def warmup_periods(self, args: Mapping[str, JsonValue]) -> int:
        return 0

    def initial_state(self, args: Mapping[str, JsonValue]) -> JsonObject:
        return {"calls": 0}

    def validate_args(self, raw: Mapping[str, object]) -> JsonObject:
        return {}

    def on_candle(
        self, context: StrategyContext, args: Mapping[str, JsonValue]
    ) -> tuple[list[Signal], JsonObject]:
        call = len(self.seen)
        self.seen.append(context)
        if call == self.fail_at:
            raise ValueError("no data")
        signals = self.plan[call] if call < len(self.plan) else []
        return signals, {"calls": int(str(context.state["calls"])) + 1}


@dataclass
class MemoryGate:
    """An ``EntryGate`` that accepts (or refuses) every entry and remembers what it was asked."""

    accept: bool = True
    policy: RiskPolicy = field(default_factory=RiskPolicy)
    reserved: list[tuple[Decimal, Decimal, str]] = field(default_factory=list)
    positions: list[tuple[int, Decimal | None]] = field(default_factory=list)

    def _answer(self, accepted: bool, total: Decimal) -> RiskAnswer:
        return RiskAnswer(
            accepted=accepted,
            reason="" if accepted else "heat",
            total=total,
            equity=Decimal(100_000),
            warned=False,
            blocked=not accepted,
            warn_change=0,
            heat_warn=Decimal("0.06"),
            heat_block=Decimal("0.10"),
        )

    def reserve(
        self,
        account: str,
        session_id: str,
        risk: Decimal,
        per_contract: Decimal,
        balance: Decimal | None,
        trade_date: str,
    ) -> RiskAnswer:
        self.reserved.append((risk, per_contract, trade_date))
        return self._answer(self.accept, risk if self.accept else Decimal(0))

    def set_position(
        self,
        account: str,
        session_id: str,
        quantity: int,
        per_contract: Decimal | None,
        equity: Decimal | None,
    ) -> RiskAnswer:
        self.positions.append((quantity, per_contract))
        return self._answer(True, abs(quantity) * (per_contract or Decimal(0)))


BASE = CloseInputs(
    session_id=SID,
    account="ACC-UNIT",
    closed=(candle(0, "100"),),
    candle_span=MINUTE,
    candles_before=0,
    trading=True,
    rolling=False,
    warmup=0,
    strategy="scripted",
    strategy_args={},
    strategy_state={"calls": 0},
    contract="ESZ13",
    tick_size=Decimal("0.25"),
    multiplier=MULT,
    balance=Decimal(100_000),
    order_type="market",
    order_quantity=1,
    time_in_force="day",
    position=None,
    orders={},
    signal_seq=0,
    entries_blocked=False,
    protective_stops=False,
)


def decide(
    strategy: Strategy,
    inputs: CloseInputs = BASE,
    gate: MemoryGate | None = None,
    history: Sequence[Candle] = (),
) -> Decision:
    def last(count: int) -> Sequence[Candle]:
        return history[-count:]

    return decide_at_close(inputs, last, gate, strategies=lambda name: strategy)


def never(what: str) -> Callable[..., Sequence[Candle]]:
    def fail(*args: object) -> Sequence[Candle]:
        raise AssertionError(f"{what} must not be read")

    return fail


def pending(coid: str, side: str, quantity: int, stop: str | None, minute: int = -1) -> Order:
    return Order(
        coid,
        "ESZ13",
        "buy" if side == "buy" else "sell",
        quantity,
        "market",
        "entry",
        T0 + minute * MINUTE,
        None if stop is None else Decimal(stop),
        status="sent",
    )


def summary(decision: Decision) -> list[tuple[object, ...]]:
    return [
        (
            d.order.client_order_id,
            d.order.side,
            d.order.quantity,
            d.order.order_type,
            d.order.intent,
            d.order.stop_price,
            d.order.created_at,
            d.time_in_force,
            d.working,
        )
        for d in decision.orders
    ]


# --------------------------------------------------------------------------- the strategy runs


def test_a_signal_becomes_an_order_with_a_deterministic_id_decided_at_the_candle_end() -> None:
    inputs = replace(BASE, order_quantity=2, signal_seq=6)
    decision = decide(Scripted([Signal(1, None, "up")]), inputs)

    coid = client_order_id(SID, 7, 0)
    assert summary(decision) == [(coid, "buy", 2, "market", "entry", None, end_of(0), "day", True)]
    assert decision.signal_seq == 7
    assert decision.strategy_state == {"calls": 1}
    assert decision.orders_changed and decision.stopped is None and decision.events == ()


def test_the_strategy_sees_the_position_with_its_pending_orders() -> None:
    strategy = Scripted([Signal(1, None, "still long")])
    inputs = replace(
        BASE,
        position=Held(quantity=1),
        orders={"a": pending("a", "buy", 1, None)},
        order_quantity=2,
    )
    decision = decide(strategy, inputs)

    assert strategy.seen[0].position == 2
    assert decision.orders == () and decision.signal_seq == 0 and not decision.orders_changed
    assert decision.strategy_state == {"calls": 1}


def test_a_reversal_is_an_exit_then_an_entry_and_each_candle_sees_the_last_decision() -> None:
    closed = (candle(0, "100"), candle(1, "99"))
    strategy = Scripted([Signal(1, None, "up")], [Signal(-1, None, "down")])
    decision = decide(strategy, replace(BASE, closed=closed))

    assert [context.position for context in strategy.seen] == [0, 1]
    assert [context.now for context in strategy.seen] == [end_of(0), end_of(1)]
    assert summary(decision) == [
        (client_order_id(SID, 1, 0), "buy", 1, "market", "entry", None, end_of(0), "day", True),
        (client_order_id(SID, 2, 0), "sell", 1, "market", "exit", None, end_of(1), "day", True),
        (client_order_id(SID, 2, 1), "sell", 1, "market", "entry", None, end_of(1), "day", True),
    ]
    assert decision.strategy_state == {"calls": 2}


# --------------------------------------------------------------------------- when it does not run


@pytest.mark.parametrize(
    "changes",
    [{"trading": False}, {"rolling": True}, {"warmup": 5, "candles_before": 3}],
    ids=["not trading", "rolling", "warming up"],
)
def test_no_strategy_call_while_not_trading_rolling_or_warming_up(
    changes: dict[str, object],
) -> None:
    stops_out = (StopOut(1, Decimal(99), -1, 0),)
    inputs = replace(BASE, signal_seq=4, stops_out=stops_out, **changes)
    decision = decide_at_close(inputs, never("history"), MemoryGate(), strategies=never("strategy"))

    assert decision == Decision(None, 4, stops_out=stops_out)


def test_candles_inside_the_warm_up_are_not_given_to_the_strategy() -> None:
    """Three candles warm up; the batch closes the 2nd and 3rd: only the 3rd runs, with the
    history before it."""
    strategy = Scripted([Signal(1, None, "up")])
    inputs = replace(BASE, warmup=3, candles_before=1, closed=(candle(1, "101"), candle(2, "102")))
    decision = decide(strategy, inputs, history=[candle(0, "100")])

    (context,) = strategy.seen
    assert [c.close for c in context.candles] == [Decimal(100), Decimal(101), Decimal(102)]
    assert context.now == end_of(2)
    assert summary(decision)[0][:2] == (client_order_id(SID, 1, 0), "buy")


def test_a_strategy_error_stops_trading_and_ends_the_batch() -> None:
    closed = (candle(0, "100"), candle(1, "101"), candle(2, "102"))
    strategy = Scripted([Signal(1, None, "up")], fail_at=1)
    decision = decide(strategy, replace(BASE, closed=closed))

    assert len(strategy.seen) == 2, "no candle after the failure runs"
    assert decision.stopped is not None and "no data" in decision.stopped
    (event,) = decision.events
    assert (event.kind, event.severity, event.message) == ("strategy", "error", decision.stopped)
    assert [d.order.client_order_id for d in decision.orders] == [client_order_id(SID, 1, 0)]
    assert decision.strategy_state == {"calls": 1}, "the state of the last good call"


# --------------------------------------------------------------------------- gates


def test_blocked_entries_are_dropped_and_exits_never_are() -> None:
    gate = MemoryGate()
    inputs = replace(BASE, position=Held(quantity=1), entries_blocked=True)
    decision = decide(Scripted([Signal(-1, Decimal(105), "down")]), inputs, gate)

    assert summary(decision) == [
        (client_order_id(SID, 1, 0), "sell", 1, "market", "exit", None, end_of(0), "day", True)
    ]
    assert decision.entries_dropped == 1
    assert gate.reserved == [], "an exit alone asks the gate nothing"


def test_a_blocked_entry_alone_decides_nothing() -> None:
    decision = decide(Scripted([Signal(1, None, "up")]), replace(BASE, entries_blocked=True))

    assert decision.orders == () and decision.signal_seq == 0
    assert decision.entries_dropped == 1


def test_an_accepted_entry_reserves_the_risk_of_its_whole_target() -> None:
    gate = MemoryGate()
    inputs = replace(BASE, order_quantity=2)
    decision = decide(Scripted([Signal(1, Decimal(98), "up")]), inputs, gate)

    assert gate.reserved == [(Decimal(200), Decimal(100), "2013-10-07")]
    assert [d.order.intent for d in decision.orders] == ["entry"]
    assert decision.heat is not None and decision.heat.total == Decimal(200)


def test_a_refused_entry_keeps_the_exits_of_its_signal() -> None:
    gate = MemoryGate(accept=False)
    inputs = replace(BASE, position=Held(quantity=1))
    decision = decide(Scripted([Signal(-1, Decimal(102), "down")]), inputs, gate)

    assert summary(decision) == [
        (client_order_id(SID, 1, 0), "sell", 1, "market", "exit", None, end_of(0), "day", True)
    ]
    (event,) = decision.events
    assert (event.kind, event.severity) == ("risk", "warning")
    assert event.message.startswith("entry refused: heat")
    assert event.details["reason"] == "heat" and event.details["target"] == -1
    assert decision.heat is not None and not decision.heat.accepted


def test_an_entry_past_the_maximum_position_is_refused_without_asking_the_book() -> None:
    gate = MemoryGate(policy=RiskPolicy(max_position=1))
    decision = decide(Scripted([Signal(2, None, "big")]), BASE, gate)

    assert decision.orders == () and gate.reserved == []
    (event,) = decision.events
    assert event.details["reason"] == "max_position"
    assert decision.heat is None


def test_without_a_gate_entries_pass_unchecked() -> None:
    decision = decide(Scripted([Signal(3, None, "up")]))

    assert [(d.order.side, d.order.quantity) for d in decision.orders] == [("buy", 3)]
    assert decision.heat is None


# --------------------------------------------------------------------------- protective stops


def test_an_entry_with_a_stop_is_decided_with_its_attached_stop() -> None:
    inputs = replace(BASE, protective_stops=True)
    decision = decide(Scripted([Signal(1, Decimal(97), "up")]), inputs)

    entry = client_order_id(SID, 1, 0)
    assert summary(decision) == [
        (entry, "buy", 1, "market", "entry", Decimal(97), end_of(0), "day", True),
        (attached_stop_id(entry), "sell", 1, "stop", "exit", Decimal(97), end_of(0), "gtc", False),
    ]


def test_a_moved_stop_moves_the_position_stop_measures_heat_and_decides_a_move_order() -> None:
    gate = MemoryGate()
    inputs = replace(BASE, position=Held(quantity=1, stop_price=Decimal(97)), protective_stops=True)
    decision = decide(Scripted([Signal(1, Decimal("98.50"), "trail")]), inputs, gate)

    assert decision.position_stop == Decimal("98.50")
    assert dict(decision.stops_moved) == {}
    assert decision.signal_seq == 1
    assert summary(decision) == [
        (
            move_stop_id(SID, 1),
            "sell",
            1,
            "stop",
            "exit",
            Decimal("98.50"),
            end_of(0),
            "gtc",
            False,
        )
    ]
    assert not decision.orders_changed, "a stop order is no working copy"
    assert gate.positions == [(1, Decimal("1.50") * MULT)]
    assert [e.message for e in decision.events] == ["stop moved from 97 to 98.50"]


def test_a_move_before_the_entry_fills_moves_the_pending_entry_stop() -> None:
    inputs = replace(BASE, orders={"e": pending("e", "buy", 1, "97")})
    decision = decide(Scripted([Signal(1, Decimal(98), "trail")]), inputs)

    assert dict(decision.stops_moved) == {"e": Decimal(98)}
    assert decision.position_stop is None
    assert decision.orders == (), "without broker stops a move is the session's only"
    assert decision.orders_changed


def test_a_stop_move_is_ignored_for_templates_other_than_market() -> None:
    inputs = replace(BASE, position=Held(quantity=1, stop_price=Decimal(97)), order_type="limit")
    decision = decide(Scripted([Signal(1, Decimal(98), "trail")]), inputs)

    assert decision.moves_ignored == 1
    assert decision.position_stop is None and decision.orders == () and decision.signal_seq == 0


def test_a_stop_touched_inside_a_candle_takes_the_position_as_closed_before_the_strategy() -> None:
    ticks = [
        Tick("ESZ13", T0 + timedelta(seconds=10), Decimal(99), 1),
        Tick("ESZ13", T0 + timedelta(seconds=20), Decimal("96.75"), 1),
        Tick("ESZ13", end_of(0), Decimal(97), 1),
    ]
    strategy = Scripted([Signal(0, None, "flat")])
    inputs = replace(
        BASE,
        position=Held(quantity=1, stop_price=Decimal(97)),
        protective_stops=True,
        ticks=ticks,
    )
    decision = decide(strategy, inputs)

    assert strategy.seen[0].position == 0, "the touched stop closed the long"
    assert decision.stops_out == (StopOut(1, Decimal(97), -1, 1381152620000),)
    assert decision.watched == 2, "the tick at the candle's end belongs to the next candle"
    (event,) = decision.events
    assert event.message.startswith("protective stop 97 touched at 96.75")
    assert decision.orders == (), "flat already: no exit is sent"
