"""Donchian breakout with an ATR stop.

Args: ``lookback`` (default 20), ``atr_period`` (default 14), ``atr_mult`` (Decimal, default 2),
``quantity`` (default 1), ``trail`` (Decimal ATR multiple, default 0: the stop stays where it
was set). Warm-up is ``max(lookback, atr_period) + 1`` closed candles.

On each closed candle:
- a stop held in state for the current side is checked first: a close at or through it
  (``close <= stop`` long, ``close >= stop`` short) takes the position to flat;
- a close above the highest high of the previous ``lookback`` candles (the current one
  excluded) goes long ``quantity``, a close below their lowest low goes short; a breakout in
  the direction already held changes nothing;
- a new position's stop is ``close - atr_mult * ATR`` (long) or ``close + atr_mult * ATR``
  (short), ATR being the simple ATR of ``indicators``, put on the contract's tick grid away
  from the price (a long stop rounds down, a short stop rounds up), so it is never tighter
  than ``atr_mult`` ATRs;
- with ``trail`` > 0, a held position's stop follows the close at ``trail`` ATRs (on the tick
  grid, away from the price) and only ever tightens: when it moves, the answer is a signal for
  the position already held with the new stop (the session moves its stop at the broker).

State: ``{"stop": "<price>" | None, "stop_side": 1 | -1 | 0}``. A stop is kept while the
position is flat (its entry may still be filling) and dropped once the position is on the
other side. A roll moves the stop by the roll spread, as it moves the candles (``roll_state``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from trading.strategies.base import (
    JsonObject,
    JsonValue,
    Signal,
    StrategyContext,
    decimal_arg,
    int_arg,
    refuse_unknown_args,
)
from trading.strategies.indicators import atr, donchian_high, donchian_low, round_to_tick

NAME = "breakout"


@dataclass(frozen=True, slots=True)
class BreakoutArgs:
    """The typed args of ``breakout``."""

    lookback: int
    atr_period: int
    atr_mult: Decimal
    quantity: int
    trail: Decimal

    @classmethod
    def parse(cls, raw: Mapping[str, object]) -> BreakoutArgs:
        refuse_unknown_args(NAME, raw, ("lookback", "atr_period", "atr_mult", "quantity", "trail"))
        return cls(
            lookback=int_arg(NAME, raw, "lookback", 20),
            atr_period=int_arg(NAME, raw, "atr_period", 14),
            atr_mult=decimal_arg(NAME, raw, "atr_mult", Decimal(2)),
            quantity=int_arg(NAME, raw, "quantity", 1),
            trail=decimal_arg(NAME, raw, "trail", Decimal(0)) if "trail" in raw else Decimal(0),
        )

    @property
    def warmup(self) -> int:
        return max(self.lookback, self.atr_period) + 1

    def to_json(self) -> JsonObject:
        canonical: JsonObject = {
            "lookback": self.lookback,
            "atr_period": self.atr_period,
            "atr_mult": str(self.atr_mult),
            "quantity": self.quantity,
        }
        if self.trail > 0:
            canonical["trail"] = str(self.trail)
        return canonical


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


def _read_stop(state: Mapping[str, JsonValue]) -> tuple[Decimal | None, int]:
    """The stop and its side from state; a missing or unreadable stop reads as none."""
    text, side = state.get("stop"), state.get("stop_side")
    if not isinstance(text, str) or type(side) is not int or side not in (-1, 1):
        return None, 0
    try:
        stop = Decimal(text)
    except InvalidOperation:
        return None, 0
    return (stop, side) if stop.is_finite() else (None, 0)


def _state(stop: Decimal | None, side: int) -> JsonObject:
    return {
        "stop": None if stop is None else str(stop),
        "stop_side": side if stop is not None else 0,
    }


class Breakout:
    """The ``breakout`` strategy."""

    name = NAME

    def validate_args(self, raw: Mapping[str, object]) -> JsonObject:
        return BreakoutArgs.parse(raw).to_json()

    def warmup_periods(self, args: Mapping[str, JsonValue]) -> int:
        return BreakoutArgs.parse(args).warmup

    def initial_state(self, args: Mapping[str, JsonValue]) -> JsonObject:
        BreakoutArgs.parse(args)
        return _state(None, 0)

    def roll_state(
        self, state: Mapping[str, JsonValue], args: Mapping[str, JsonValue], spread: Decimal
    ) -> JsonObject:
        """The stop in the new contract's terms: moved by the spread, as the candles are (the
        spread is a difference of two prices on the tick grid, so the stop stays on it)."""
        BreakoutArgs.parse(args)
        stop, side = _read_stop(state)
        return _state(None if stop is None else stop + spread, side)

    def on_candle(
        self, context: StrategyContext, args: Mapping[str, JsonValue]
    ) -> tuple[list[Signal], JsonObject]:
        params = BreakoutArgs.parse(args)
        stop, stop_side = _read_stop(context.state)
        candles = context.candles
        if len(candles) < params.warmup:
            return [], _state(stop, stop_side)
        close = candles[-1].close
        position = context.position
        held = _sign(position)
        if stop is not None and held == -stop_side:
            stop, stop_side = None, 0
        effective = position
        reasons: list[str] = []
        if stop is not None and held == stop_side:
            crossed = close <= stop if held > 0 else close >= stop
            if crossed:
                reasons.append(f"close {close} crossed stop {stop}")
                effective, stop, stop_side = 0, None, 0

        previous = candles[-(params.lookback + 1) : -1]
        high, low = (
            donchian_high(previous, params.lookback),
            donchian_low(previous, params.lookback),
        )
        direction = 1 if close > high else -1 if close < low else 0
        target = effective
        if direction != 0 and _sign(effective) != direction:
            target = direction * params.quantity
            distance = params.atr_mult * atr(candles, params.atr_period)
            stop = round_to_tick(
                close - direction * distance, context.tick_size, down=direction > 0
            )
            stop_side = direction
            edge = (
                f"{params.lookback}-bar high {high}"
                if direction > 0
                else (f"{params.lookback}-bar low {low}")
            )
            reasons.append(f"close {close} broke {edge}, stop {stop}")

        if target == position and stop is not None and held == stop_side and params.trail > 0:
            trailed = round_to_tick(
                close - held * params.trail * atr(candles, params.atr_period),
                context.tick_size,
                down=held > 0,
            )
            if (trailed - stop) * held > 0:
                stop = trailed
                return [Signal(position, stop, f"trail stop to {stop}")], _state(stop, stop_side)
        if target == position:
            return [], _state(stop, stop_side)
        signal = Signal(
            target_position=target,
            stop_price=stop if target != 0 else None,
            reason="; ".join(reasons),
        )
        return [signal], _state(stop, stop_side)
