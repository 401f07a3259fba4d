"""Market-data sources: replay of the real Lean files, a seeded synthetic walk, and a registry."""

from workers.feeds.base import MarketDataSource, Pacer, paced, parse_speed
from workers.feeds.registry import create_feed, feed_names, get_feed_factory

__all__ = [
    "MarketDataSource",
    "Pacer",
    "create_feed",
    "feed_names",
    "get_feed_factory",
    "paced",
    "parse_speed",
]
