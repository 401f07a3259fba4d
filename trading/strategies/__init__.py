"""Strategies: the protocol, the one wrapper that runs user code, the registry, the built-ins."""

from trading.strategies.base import (
    JsonObject,
    JsonValue,
    PreparedStrategy,
    Signal,
    Strategy,
    StrategyContext,
    call_strategy,
    prepare_strategy,
)
from trading.strategies.registry import get_strategy, refresh_registry, strategy_names

__all__ = [
    "JsonObject",
    "JsonValue",
    "PreparedStrategy",
    "Signal",
    "Strategy",
    "StrategyContext",
    "call_strategy",
    "get_strategy",
    "prepare_strategy",
    "refresh_registry",
    "strategy_names",
]
