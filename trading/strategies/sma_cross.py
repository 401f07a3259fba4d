"""Moving-average cross: long while the fast SMA of closes is above the slow one, short below.

Args: ``fast`` (default 10), ``slow`` (default 30, greater than fast), ``quantity`` (default 1).
Warm-up is ``slow`` closed candles. When the averages are equal nothing changes. A signal is
emitted only when the wanted position differs from the current one. State records the last
direction seen (``1`` fast above, ``-1`` below, ``0`` none yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from trading.exceptions import BadInput
from trading.strategies.base import (
    JsonObject,
    JsonValue,
    Signal,
    StrategyContext,
    int_arg,
    refuse_unknown_args,
)
from trading.strategies.indicators import sma

NAME = "sma_cross"


@dataclass(frozen=True, slots=True)
class SmaCrossArgs:
    """The typed args of ``sma_cross``."""

    fast: int
    slow: int
    quantity: int

    @classmethod
    def parse(cls, raw: Mapping[str, object]) -> SmaCrossArgs:
        refuse_unknown_args(NAME, raw, ("fast", "slow", "quantity"))
        fast = int_arg(NAME, raw, "fast", 10)
        slow = int_arg(NAME, raw, "slow", 30)
        if slow <= fast:
            raise BadInput(f"strategy {NAME!r}: slow ({slow}) must be greater than fast ({fast})")
        return cls(fast=fast, slow=slow, quantity=int_arg(NAME, raw, "quantity", 1))

    def to_json(self) -> JsonObject:
        return {"fast": self.fast, "slow": self.slow, "quantity": self.quantity}


class SmaCross:
    """The ``sma_cross`` strategy."""

    name = NAME

    def validate_args(self, raw: Mapping[str, object]) -> JsonObject:
        return SmaCrossArgs.parse(raw).to_json()

    def warmup_periods(self, args: Mapping[str, JsonValue]) -> int:
        return SmaCrossArgs.parse(args).slow

    def initial_state(self, args: Mapping[str, JsonValue]) -> JsonObject:
        SmaCrossArgs.parse(args)
        return {"last_direction": 0}

    def on_candle(
        self, context: StrategyContext, args: Mapping[str, JsonValue]
    ) -> tuple[list[Signal], JsonObject]:
        params = SmaCrossArgs.parse(args)
        last = context.state.get("last_direction", 0)
        state: JsonObject = {"last_direction": last if type(last) is int and last in (-1, 1) else 0}
        if len(context.candles) < params.slow:
            return [], state
        closes = [candle.close for candle in context.candles[-params.slow :]]
        fast_avg = sma(closes, params.fast)
        slow_avg = sma(closes, params.slow)
        if fast_avg == slow_avg:
            return [], state
        direction = 1 if fast_avg > slow_avg else -1
        state["last_direction"] = direction
        target = direction * params.quantity
        if target == context.position:
            return [], state
        word = "above" if direction > 0 else "below"
        reason = (
            f"fast SMA({params.fast}) {fast_avg:.6f} {word} slow SMA({params.slow}) {slow_avg:.6f}"
        )
        return [Signal(target_position=target, stop_price=None, reason=reason)], state
