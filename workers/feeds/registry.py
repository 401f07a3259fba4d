"""Market-data sources by registered name: the built-ins, plus entry points of the group
``tradefleet.feeds`` (an installed package can add its own source factory).

Only registered names are ever resolved: no module path taken from input is imported. The
built-ins always exist and an entry point cannot replace one. An entry point names either a
class with a ``from_args(args, settings)`` classmethod or a callable
``factory(args, settings) -> source``.
Discovery reads installed package metadata once and is cached (``refresh_registry`` forgets it).
"""

from __future__ import annotations

import threading
from functools import cache
from importlib.metadata import EntryPoint

from trading.exceptions import BadInput, UnknownRegisteredName
from trading.plugins import plugin_entry_points
from workers.feeds.base import (
    FeedArgs,
    HistoryFactory,
    HistorySource,
    MarketDataSource,
    SourceFactory,
)
from workers.feeds.replay import ReplayHistory, ReplaySource
from workers.feeds.synthetic import SyntheticSource
from workers.feeds.tradovate import TradovateHistory, TradovateSource
from workers.settings import Settings

ENTRY_POINT_GROUP = "tradefleet.feeds"

BUILTINS: dict[str, SourceFactory] = {
    ReplaySource.name: ReplaySource.from_args,
    SyntheticSource.name: SyntheticSource.from_args,
    TradovateSource.name: TradovateSource.from_args,
}

HISTORIES: dict[str, HistoryFactory] = {
    ReplaySource.name: ReplayHistory.from_settings,
    TradovateSource.name: TradovateHistory.from_settings,
}
"""The sources with the history capability (the warm-up of ``workers.feeds.history``)."""

DATA_TIME_SOURCES = frozenset({ReplaySource.name, SyntheticSource.name})
"""The sources that publish recorded or generated ticks at any pace: a tick's time is its
data's, not the wall clock's, so how long ago (in wall time) their last tick was says nothing
about whether they are alive. Every other source, a plugin's included, prints the market as it
trades."""

_loaded: dict[str, SourceFactory] = {}
_lock = threading.Lock()


@cache
def _plugins() -> dict[str, tuple[EntryPoint, ...]]:
    return plugin_entry_points(ENTRY_POINT_GROUP, BUILTINS)


def feed_names() -> list[str]:
    """Every registered feed name, sorted."""
    return sorted({*BUILTINS, *_plugins()})


def get_feed_factory(name: str) -> SourceFactory:
    """The factory registered as ``name``; ``UnknownRegisteredName`` if nobody registered it."""
    builtin = BUILTINS.get(name)
    if builtin is not None:
        return builtin
    with _lock:
        factory = _loaded.get(name)
        if factory is None:
            factory = _load_plugin(name)
            _loaded[name] = factory
        return factory


def create_feed(name: str, args: FeedArgs, settings: Settings) -> MarketDataSource:
    """Build the source registered as ``name`` from its JSON args (``BadInput`` if bad)."""
    source = get_feed_factory(name)(args, settings)
    if not isinstance(source, MarketDataSource):
        raise BadInput(f"feed {name!r} did not build a market-data source")
    return source


def history_source(name: str, settings: Settings) -> HistorySource | None:
    """The history reader of the source registered as ``name``; None when it has none (a
    session fed by it warms up from the stream alone). A plugin source offers one by a
    ``history_from_settings(settings)`` classmethod next to its ``from_args``."""
    factory = HISTORIES.get(name)
    if factory is None and name not in BUILTINS:
        target = get_feed_factory(name)
        owner = getattr(target, "__self__", None)
        factory = getattr(owner, "history_from_settings", None)
    return None if factory is None else factory(settings)


def prints_live(name: str) -> bool:
    """Whether the source registered as ``name`` publishes a market as it trades, so its
    ticks' times follow the wall clock (``DATA_TIME_SOURCES`` do not)."""
    return name not in DATA_TIME_SOURCES


def refresh_registry() -> None:
    """Forget discovered entry points and loaded plugin factories."""
    with _lock:
        _plugins.cache_clear()
        _loaded.clear()


def _load_plugin(name: str) -> SourceFactory:
    points = _plugins().get(name)
    if not points:
        raise UnknownRegisteredName("feed", name, feed_names())
    if len(points) > 1:
        sources = ", ".join(point.value for point in points)
        raise BadInput(f"feed {name!r} is registered more than once: {sources}")
    point = points[0]
    try:
        target = point.load()
    except Exception as exc:
        raise BadInput(
            f"feed {name!r} ({point.value}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    from_args = getattr(target, "from_args", None)
    factory = from_args if callable(from_args) else target
    if not callable(factory):
        raise BadInput(
            f"feed {name!r} ({point.value}) is neither a class with from_args nor callable"
        )
    return factory  # type: ignore[no-any-return]
