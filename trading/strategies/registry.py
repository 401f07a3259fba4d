"""Strategies by registered name: the built-ins, plus entry points of the group
``tradefleet.strategies`` (so an installed package can add its own).

Only registered names are ever resolved: no module path taken from input is imported. The
built-ins always exist, even when this package's entry points are not installed, and an entry
point cannot replace a built-in name. An entry point may name a strategy class (instantiated
without arguments) or a strategy instance. Discovery reads installed package metadata once and
is cached; ``refresh_registry`` forgets it (after installing a plugin into a running process).
"""

from __future__ import annotations

import threading
from functools import cache
from importlib.metadata import EntryPoint

from trading.exceptions import StrategyError, UnknownRegisteredName
from trading.plugins import plugin_entry_points
from trading.strategies.base import Strategy
from trading.strategies.breakout import Breakout
from trading.strategies.sma_cross import SmaCross

ENTRY_POINT_GROUP = "tradefleet.strategies"

BUILTINS: dict[str, type[Strategy]] = {"sma_cross": SmaCross, "breakout": Breakout}

_loaded: dict[str, Strategy] = {}
_lock = threading.Lock()


@cache
def _plugins() -> dict[str, tuple[EntryPoint, ...]]:
    """Entry points of the group by name, built-in names left out."""
    return plugin_entry_points(ENTRY_POINT_GROUP, BUILTINS)


def strategy_names() -> list[str]:
    """Every registered strategy name, sorted."""
    return sorted({*BUILTINS, *_plugins()})


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``.

    Raises ``UnknownRegisteredName`` for a name nobody registered, and ``StrategyError`` when
    a plugin is registered twice, fails to load, or is not a strategy.
    """
    with _lock:
        strategy = _loaded.get(name)
        if strategy is None:
            strategy = _load(name)
            _loaded[name] = strategy
        return strategy


def refresh_registry() -> None:
    """Forget discovered entry points and loaded strategies."""
    with _lock:
        _plugins.cache_clear()
        _loaded.clear()


def _load(name: str) -> Strategy:
    builtin = BUILTINS.get(name)
    if builtin is not None:
        return builtin()
    points = _plugins().get(name)
    if not points:
        raise UnknownRegisteredName("strategy", name, strategy_names())
    if len(points) > 1:
        sources = ", ".join(point.value for point in points)
        raise StrategyError(f"strategy {name!r} is registered more than once: {sources}")
    point = points[0]
    try:
        target = point.load()
        strategy = target() if isinstance(target, type) else target
    except Exception as exc:
        raise StrategyError(
            f"strategy {name!r} ({point.value}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(strategy, Strategy):
        raise StrategyError(
            f"strategy {name!r} ({point.value}) is not a strategy: it lacks name, "
            "warmup_periods, initial_state, validate_args or on_candle"
        )
    return strategy
