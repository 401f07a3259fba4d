from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading.exceptions import BadInput, StrategyError
from trading.market import Candle
from trading.strategies import (
    JsonObject,
    JsonValue,
    Signal,
    StrategyContext,
    call_roll_state,
    call_strategy,
    prepare_strategy,
)
from trading.strategies.breakout import Breakout
from trading.strategies.indicators import atr, donchian_high, donchian_low, round_to_tick, sma
from trading.strategies.sma_cross import SmaCross

T0 = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)


def bar(i: int, o: str, h: str, low: str, c: str) -> Candle:
    return Candle(T0 + timedelta(minutes=i), Decimal(o), Decimal(h), Decimal(low), Decimal(c), 10)


def closes_to_candles(closes: Sequence[str]) -> list[Candle]:
    return [bar(i, c, c, c, c) for i, c in enumerate(closes)]


def context(
    candles: Sequence[Candle],
    position: int = 0,
    state: Mapping[str, JsonValue] | None = None,
    tick: str = "0.25",
) -> StrategyContext:
    return StrategyContext(
        candles=tuple(candles),
        position=position,
        contract="ESM5",
        tick_size=Decimal(tick),
        balance=Decimal("100000"),
        now=candles[-1].start + timedelta(minutes=1) if candles else T0,
        state=state or {},
    )


def run(
    strategy: SmaCross | Breakout, candles: Sequence[Candle], args: JsonObject, tick: str = "0.25"
) -> list[tuple[int, Signal]]:
    """Feed candles one by one; each signal fills at once. Returns (candle count, signal)."""
    prepared = prepare_strategy(strategy, args)
    state, position, emitted = prepared.state, 0, []
    for n in range(1, len(candles) + 1):
        signals, state = call_strategy(
            strategy, context(candles[:n], position, state, tick), prepared.args
        )
        assert json.loads(json.dumps(state)) == state
        for signal in signals:
            assert signal.target_position != position
            emitted.append((n, signal))
            position = signal.target_position
    return emitted


# --- indicators -------------------------------------------------------------------------


def test_indicators() -> None:
    values = [Decimal(v) for v in ("1", "2", "3", "4")]
    assert sma(values, 2) == Decimal("3.5")
    assert sma(values, 3) == Decimal(3)
    candles = [bar(0, "10", "12", "9", "11"), bar(1, "11", "15", "10", "14")]
    candles.append(bar(2, "14", "14", "8", "9"))
    assert donchian_high(candles, 2) == Decimal(15)
    assert donchian_low(candles, 3) == Decimal(8)
    # true ranges: max(5, 4, 1) = 5 and max(6, 0, 6) = 6
    assert atr(candles, 2) == Decimal("5.5")
    assert round_to_tick(Decimal("97.8333"), Decimal("0.25"), down=True) == Decimal("97.75")
    assert round_to_tick(Decimal("97.8333"), Decimal("0.25"), down=False) == Decimal("98.00")
    with pytest.raises(ValueError, match="needs 4 values, got 3"):
        atr(candles, 3)


# --- sma_cross --------------------------------------------------------------------------

SMA_CLOSES = ["10", "9", "8", "7", "6", "7", "8", "9", "10", "9", "8", "7", "6"]


def test_sma_cross_signals_on_crosses_only() -> None:
    emitted = run(SmaCross(), closes_to_candles(SMA_CLOSES), {"fast": "2", "slow": "4"})
    # 4 candles: fast 7.5 < slow 8.5 -> short; 7: 7.5 > 7 -> long; 11: 8.5 < 9 -> short.
    assert [(n, s.target_position) for n, s in emitted] == [(4, -1), (7, 1), (11, -1)]
    assert all(s.stop_price is None and "SMA" in s.reason for _, s in emitted)


def test_sma_cross_nothing_during_warmup() -> None:
    strategy = SmaCross()
    args = strategy.validate_args({"fast": 2, "slow": 4})
    assert strategy.warmup_periods(args) == 4
    rising = closes_to_candles(["1", "2", "3"])
    signals, state = call_strategy(strategy, context(rising), args)
    assert signals == []
    assert state == {"last_direction": 0}


def test_sma_cross_no_redundant_or_equal_signal() -> None:
    strategy = SmaCross()
    args = strategy.validate_args({"fast": "2", "slow": "4", "quantity": "3"})
    rising = closes_to_candles(["1", "2", "3", "4"])
    signals, state = call_strategy(strategy, context(rising, position=0), args)
    assert [s.target_position for s in signals] == [3]
    assert state == {"last_direction": 1}
    signals, _ = call_strategy(strategy, context(rising, position=3), args)
    assert signals == []
    flat = closes_to_candles(["1", "3", "2", "2"])  # fast 2 == slow 2
    signals, _ = call_strategy(strategy, context(flat, position=0), args)
    assert signals == []


def test_sma_cross_validate_args() -> None:
    strategy = SmaCross()
    assert strategy.validate_args({}) == {"fast": 10, "slow": 30, "quantity": 1}
    canonical = strategy.validate_args({"fast": " 5", "slow": "20"})
    assert canonical == {"fast": 5, "slow": 20, "quantity": 1}
    assert strategy.validate_args(canonical) == canonical
    with pytest.raises(BadInput, match=r"fast='abc'.*integer"):
        strategy.validate_args({"fast": "abc"})
    with pytest.raises(BadInput, match=r"unknown argument 'fats'.*known: fast, quantity, slow"):
        strategy.validate_args({"fats": "5"})
    with pytest.raises(BadInput, match="slow"):
        strategy.validate_args({"fast": "30", "slow": "10"})
    with pytest.raises(BadInput, match="quantity"):
        strategy.validate_args({"quantity": True})
    with pytest.raises(BadInput, match="quantity"):
        strategy.validate_args({"quantity": "0"})


# --- breakout ---------------------------------------------------------------------------

BASE = [
    bar(0, "100", "101", "99", "100"),
    bar(1, "100", "101", "99", "100"),
    bar(2, "100", "101", "99", "100"),
    bar(3, "100", "101", "99", "100.5"),
]
BREAKOUT_ARGS: JsonObject = {"lookback": "3", "atr_period": "3", "atr_mult": "2"}


def test_breakout_long_with_atr_stop_then_stop_exit() -> None:
    candles = [
        *BASE,
        bar(4, "100.5", "103", "100", "102.5"),  # breaks the 3-bar high 101
        bar(5, "102.5", "104", "95", "103.5"),  # new high while long: nothing
        bar(6, "103.5", "103.5", "97", "97.5"),  # closes through the stop, above the 3-bar low 95
        bar(7, "97.5", "98", "97", "97.6"),
    ]
    emitted = run(Breakout(), candles, BREAKOUT_ARGS)
    assert [(n, s.target_position, s.stop_price) for n, s in emitted] == [
        # true ranges 2, 2, 3 -> ATR 7/3; 102.5 - 2 * 7/3 = 97.8333.. -> down to tick 97.75
        (5, 1, Decimal("97.75")),
        (7, 0, None),
    ]
    assert "crossed stop 97.75" in emitted[1][1].reason


def test_breakout_trailing_stop_only_tightens_and_is_signalled_for_the_held_position() -> None:
    strategy = Breakout()
    args = strategy.validate_args({**BREAKOUT_ARGS, "trail": "1"})
    assert args["trail"] == "1" and strategy.validate_args(args) == args
    candles = [
        *BASE,
        bar(4, "100.5", "103", "100", "102.5"),  # long, stop 97.75 (as without trail)
        bar(5, "102.5", "104", "95", "103.5"),  # ATR 14/3: 103.5 - 4.67 -> 98.75, tighter
        bar(6, "103.5", "103.6", "101", "101.5"),  # 101.5 - 4.87 -> 96.5 would loosen: kept
        bar(7, "101.5", "101.5", "98", "98.5"),  # closes through 98.75: flat
    ]
    state, position, emitted = strategy.initial_state(args), 0, []
    for n in range(5, len(candles) + 1):
        signals, state = call_strategy(strategy, context(candles[:n], position, state), args)
        for signal in signals:
            emitted.append((n, signal.target_position, signal.stop_price))
            position = signal.target_position
        if n == 6:
            assert state == {"stop": "98.75", "stop_side": 1}
    assert emitted == [(5, 1, Decimal("97.75")), (6, 1, Decimal("98.75")), (8, 0, None)]


def test_breakout_trail_is_optional_and_must_be_positive() -> None:
    strategy = Breakout()
    assert "trail" not in strategy.validate_args(BREAKOUT_ARGS)
    with pytest.raises(BadInput, match="trail"):
        strategy.validate_args({**BREAKOUT_ARGS, "trail": "0"})


def test_breakout_short_stop_rounds_up_and_state_holds_stop() -> None:
    strategy = Breakout()
    args = strategy.validate_args({**BREAKOUT_ARGS, "atr_mult": "1.3"})
    candles = [*BASE, bar(4, "100", "100.5", "97", "97.5")]  # below the 3-bar low 99
    signals, state = call_strategy(strategy, context(candles, tick="0.5"), args)
    # true ranges 2, 2, 3.5 -> ATR 2.5; 97.5 + 1.3 * 2.5 = 100.75 -> up to tick 101.0
    assert signals == [Signal(-1, Decimal("101.0"), signals[0].reason)]
    assert state == {"stop": "101.0", "stop_side": -1}
    assert json.loads(json.dumps(state)) == state


def test_breakout_reverses_a_long_on_a_breakdown() -> None:
    strategy = Breakout()
    args = strategy.validate_args(BREAKOUT_ARGS)
    candles = [*BASE, bar(4, "100", "100.5", "97", "97.5")]
    held = {"stop": "95", "stop_side": 1}
    signals, state = call_strategy(strategy, context(candles, position=1, state=held), args)
    assert [s.target_position for s in signals] == [-1]
    assert state["stop_side"] == -1


def test_breakout_warmup_and_args() -> None:
    strategy = Breakout()
    args = strategy.validate_args(BREAKOUT_ARGS)
    assert args == {"lookback": 3, "atr_period": 3, "atr_mult": "2", "quantity": 1}
    assert strategy.validate_args(args) == args
    assert strategy.warmup_periods(args) == 4
    assert strategy.warmup_periods(strategy.validate_args({})) == 21
    early = [*BASE[:2], bar(2, "100", "110", "100", "110")]
    signals, _ = call_strategy(strategy, context(early), args)
    assert signals == []
    with pytest.raises(BadInput, match="atr_mult"):
        strategy.validate_args({"atr_mult": 2.5})
    with pytest.raises(BadInput, match="atr_mult"):
        strategy.validate_args({"atr_mult": "-1"})
    with pytest.raises(BadInput, match="unknown argument 'stop'"):
        strategy.validate_args({"stop": "1"})


# --- call_strategy / prepare_strategy ---------------------------------------------------


class Scripted:
    """A user strategy whose on_candle answer (or exception) is given."""

    name = "scripted"

    def __init__(self, answer: object = None, error: Exception | None = None) -> None:
        self.answer, self.error = answer, error

    def warmup_periods(self, args: Mapping[str, JsonValue]) -> int:
        return 0

    def initial_state(self, args: Mapping[str, JsonValue]) -> JsonObject:
        return {}

    def validate_args(self, raw: Mapping[str, object]) -> JsonObject:
        return {}

    def on_candle(self, ctx: StrategyContext, args: Mapping[str, JsonValue]) -> object:
        assert isinstance(ctx.state, dict)
        ctx.state["touched"] = True  # a failing strategy must not leak this to the caller
        if self.error is not None:
            raise self.error
        return self.answer


def test_call_strategy_wraps_an_exception() -> None:
    state = {"n": 1}
    strategy = Scripted(error=ZeroDivisionError("division by zero"))
    with pytest.raises(StrategyError, match="'scripted' failed: ZeroDivisionError: division by"):
        call_strategy(strategy, context(BASE, state=state), {})  # type: ignore[arg-type]
    assert state == {"n": 1}


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        (None, "expected a .signals, state. tuple"),
        ([[], {}], "expected a .signals, state. tuple"),
        (((), {}), "signals of type tuple"),
        (([1], {}), r"signals\[0\] of type int"),
        (([Signal(True, None, "")], {}), "target_position of type bool"),
        (([Signal(1.0, None, "")], {}), "target_position of type float"),  # type: ignore[arg-type]
        (([Signal(1, 99.5, "")], {}), "stop_price 99.5"),  # type: ignore[arg-type]
        (([Signal(1, Decimal("NaN"), "")], {}), "stop_price"),
        (([], []), "state of type list"),
        (([], {"stop": Decimal("1")}), r"state\['stop'\] is a Decimal"),
        (([], {"x": [1, {"y": float("inf")}]}), "not finite"),
        (([], {1: "a"}), "not a string"),
        (([], {"when": T0}), "of type datetime"),
    ],
)
def test_call_strategy_refuses_a_malformed_answer(answer: object, complaint: str) -> None:
    with pytest.raises(StrategyError, match=rf"strategy 'scripted' returned.*{complaint}"):
        call_strategy(Scripted(answer), context(BASE), {})  # type: ignore[arg-type]


def test_call_strategy_passes_a_good_answer() -> None:
    answer = ([Signal(2, Decimal("99.5"), "go")], {"a": [1, "2", None, 3.5, {"b": True}]})
    signals, state = call_strategy(Scripted(answer), context(BASE), {})  # type: ignore[arg-type]
    assert signals == answer[0]
    assert state == answer[1]
    assert json.loads(json.dumps(state)) == state


def test_prepare_strategy() -> None:
    prepared = prepare_strategy(SmaCross(), {"fast": "3", "slow": "5", "quantity": "2"})
    assert prepared.args == {"fast": 3, "slow": 5, "quantity": 2}
    assert prepared.warmup_periods == 5
    assert prepared.state == {"last_direction": 0}
    with pytest.raises(BadInput, match="fast"):
        prepare_strategy(SmaCross(), {"fast": "x"})

    class BadWarmup(Scripted):
        def warmup_periods(self, args: Mapping[str, JsonValue]) -> int:
            raise KeyError("lookback")

    with pytest.raises(StrategyError, match="'scripted' failed: KeyError"):
        prepare_strategy(BadWarmup(), {})  # type: ignore[arg-type]


# --- rolls ------------------------------------------------------------------------------


def test_breakout_stop_moves_with_the_candles_at_a_roll() -> None:
    """Held long with a stop at 97.75; the new contract trades 3.25 above the old one, so the
    candles are back-adjusted up 3.25 and the stop with them, to 101.00: a close of 100.75
    crosses it (against the old 97.75 it would read as far above the stop)."""
    strategy = Breakout()
    args = prepare_strategy(strategy, BREAKOUT_ARGS).args
    held: JsonObject = {"stop": "97.75", "stop_side": 1}
    rolled = call_roll_state(strategy, held, args, Decimal("3.25"))
    assert rolled == {"stop": "101.00", "stop_side": 1}
    old = [("100", "101", "95", "100")] * 4 + [("100", "100.5", "97", "97.5")]
    adjusted = [
        bar(i, *(str(Decimal(p) + Decimal("3.25")) for p in prices)) for i, prices in enumerate(old)
    ]
    signals, after = call_strategy(strategy, context(adjusted, 1, rolled), args)
    assert [(s.target_position, s.reason) for s in signals] == [
        (0, "close 100.75 crossed stop 101.00")
    ]
    assert after == {"stop": None, "stop_side": 0}
    signals, _ = call_strategy(strategy, context(adjusted[:4], 1, rolled), args)
    assert signals == [], "103.25 is above the moved stop: held"
    flat: JsonObject = {"stop": None, "stop_side": 0}
    assert call_roll_state(strategy, flat, args, Decimal("-2")) == flat


def test_a_strategy_without_roll_state_keeps_its_state_through_a_roll() -> None:
    state: JsonObject = {"last_direction": 1}
    rolled = call_roll_state(SmaCross(), state, {"fast": 3, "slow": 5, "quantity": 1}, Decimal(5))
    assert rolled == state
    assert rolled is not state


class RollsBadly(Scripted):
    def __init__(self, answer: object = None, error: Exception | None = None) -> None:
        super().__init__(([], {}), error)
        self.rolled = answer

    def roll_state(
        self, state: Mapping[str, JsonValue], args: Mapping[str, JsonValue], spread: Decimal
    ) -> object:
        if self.error is not None:
            raise self.error
        return self.rolled


def test_call_roll_state_turns_failures_into_strategy_errors() -> None:
    with pytest.raises(StrategyError, match="'scripted' failed at a roll: KeyError: 'stop'"):
        call_roll_state(RollsBadly(error=KeyError("stop")), {}, {}, Decimal(1))  # type: ignore[arg-type]
    with pytest.raises(StrategyError, match=r"rolled state\['stop'\] is a Decimal"):
        call_roll_state(RollsBadly({"stop": Decimal(1)}), {}, {}, Decimal(1))  # type: ignore[arg-type]
    with pytest.raises(StrategyError, match="rolled state of type list"):
        call_roll_state(RollsBadly([]), {}, {}, Decimal(1))  # type: ignore[arg-type]
