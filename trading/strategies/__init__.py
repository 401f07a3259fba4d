"""Strategies: the protocol, the one wrapper that runs user code, the registry, the built-ins."""

from trading.strategies.base import (
    JsonObject,
    JsonValue,
    PreparedStrategy,
    RollsState,
    Signal,
    Strategy,
    StrategyContext,
    call_roll_state,
    call_strategy,
    prepare_strategy,
)
from trading.strategies.registry import get_strategy, refresh_registry, strategy_names

__all__ = [
    "JsonObject",
    "JsonValue",
    "PreparedStrategy",
    "RollsState",
    "Signal",
    "Strategy",
    "StrategyContext",
    "call_roll_state",
    "call_strategy",
    "get_strategy",
    "prepare_strategy",
    "refresh_registry",
    "strategy_names",
]
