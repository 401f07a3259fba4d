"""What a drill replays: the sessions, the real data they trade and how fast it is published.

Every drill and its reference run the same scenario, so their fills can be compared one by one.
The sessions are the issue's: ``sma_cross`` on ES 1m, a trailing ``breakout`` on ES 5m and a
``breakout`` on GC 1m, each on its own account (the broker's account position is the session's
own). The window is a slice of real data in data time, published paced so that it lasts about
``seconds`` of wall time: a fault lands mid-replay, with ticks still arriving, as it would live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from trading.exceptions import BadInput


@dataclass(frozen=True, slots=True)
class DrillSession:
    """One session every run creates."""

    label: str
    product: str
    contract: str
    strategy: str
    args: tuple[tuple[str, str], ...]
    timeframe: str

    @property
    def account(self) -> str:
        return f"DRILL-{self.label.upper()}"


@dataclass(frozen=True, slots=True)
class DrillFeed:
    """One contract the feed host publishes, from the replay files."""

    product: str
    contract: str


@dataclass(frozen=True, slots=True)
class Scenario:
    """A replay: the sessions, the contracts and the data-time window ``[start, end)``,
    published at ``speed`` times real time so that it lasts about ``seconds``."""

    name: str
    sessions: tuple[DrillSession, ...]
    feeds: tuple[DrillFeed, ...]
    start: datetime
    end: datetime
    seconds: float

    @property
    def speed(self) -> float:
        return (self.end - self.start).total_seconds() / self.seconds

    @property
    def days(self) -> tuple[date, date]:
        """The first and last date of the replay files the window reads."""
        return self.start.date(), self.end.date()


SESSIONS: tuple[DrillSession, ...] = (
    DrillSession("es-sma", "ES", "ESZ13", "sma_cross", (("fast", "3"), ("slow", "8")), "1m"),
    DrillSession(
        "es-trail",
        "ES",
        "ESZ13",
        "breakout",
        (("lookback", "10"), ("atr_mult", "3"), ("trail", "2")),
        "5m",
    ),
    DrillSession("gc-breakout", "GC", "GCZ13", "breakout", (("lookback", "20"),), "1m"),
)
FEEDS: tuple[DrillFeed, ...] = (DrillFeed("ES", "ESZ13"), DrillFeed("GC", "GCZ13"))

FULL = Scenario(
    "full",
    SESSIONS,
    FEEDS,
    start=datetime(2013, 10, 7, 12, 0, tzinfo=UTC),
    end=datetime(2013, 10, 7, 20, 0, tzinfo=UTC),
    seconds=90.0,
)
"""``make drill``: eight hours of the US session in 90 s (every fault fits inside it, the
broker's 60 s outage included)."""
SHORT = Scenario(
    "short",
    SESSIONS,
    FEEDS,
    start=datetime(2013, 10, 7, 13, 30, tzinfo=UTC),
    end=datetime(2013, 10, 7, 16, 30, tzinfo=UTC),
    seconds=30.0,
)
"""The form the test suite runs: three hours of the same day in 30 s."""

SCENARIOS = {scenario.name: scenario for scenario in (FULL, SHORT)}


def scenario_named(name: str) -> Scenario:
    """A registered scenario by name (``BadInput`` naming the known ones otherwise)."""
    try:
        return SCENARIOS[name]
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise BadInput(f"unknown drill scenario {name!r} (known: {known})") from None
