"""What a market-data source is, and pacing of its ticks against a clock.

A source yields ticks in time order (``ticks()``, unpaced: as fast as they can be read).
The feed process publishes ``paced(source.ticks(), source.speed)``: ``speed`` 60 plays the
data at 60x real time from the data's own time differences, ``None`` ("max") not paced at all.
The clock and sleep are arguments, so tests pace with a fake clock and never sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, Protocol, TypeVar, runtime_checkable

from trading.exceptions import BadInput
from trading.market import Candle, Tick
from workers.settings import Settings

T = TypeVar("T")

FeedArgs = Mapping[str, Any]
"""A source's JSON args as stored in ``market_data_source.args``; each source checks its own."""


@runtime_checkable
class MarketDataSource(Protocol):
    """A registered market-data source built from its args."""

    @property
    def instruments(self) -> tuple[str, ...]:
        """The contract symbols this source emits ticks for."""
        ...

    @property
    def speed(self) -> float | None:
        """Pacing: a multiple of real time, or ``None`` for as fast as possible."""
        ...

    def ticks(self) -> Iterator[Tick]:
        """Every tick in time order, unpaced."""
        ...


@runtime_checkable
class HistorySource(Protocol):
    """The optional history capability of a market-data source (the warm-up of
    ``workers.feeds.history``): the source's 1-minute bars, the same bars it publishes as
    ticks (``workers.feeds.bars``)."""

    def history(self, contract: str, until: datetime, minutes: int) -> list[Candle]:
        """The last ``minutes`` completed 1-minute bars of ``contract`` (tradefleet symbol)
        whose start is before ``until``, oldest first; fewer when the source has fewer.
        Raises ``ServiceUnavailable`` when the source cannot be read (never an empty answer
        for a failure)."""
        ...


HistoryFactory = Callable[[Settings], HistorySource]
"""Builds a source's history reader from the process's settings alone (a session stores only
its instrument in ``market_data_source.args``)."""


SourceFactory = Callable[[FeedArgs, Settings], MarketDataSource]
"""Builds a source from its JSON args and the process's settings; raises ``BadInput`` for bad
args."""


def parse_speed(value: object) -> float | None:
    """``"max"`` / ``None`` → ``None`` (no pacing); a positive number → that multiple."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "max"):
        return None
    if isinstance(value, bool):
        raise BadInput(f"bad speed {value!r}: expected a positive number or 'max'")
    try:
        speed = float(value) if isinstance(value, int | float | str) else float("nan")
    except ValueError:
        speed = float("nan")
    if not speed > 0 or speed == float("inf"):
        raise BadInput(f"bad speed {value!r}: expected a positive number or 'max'")
    return speed


@dataclass(slots=True)
class Pacer:
    """Turns data times into waits: data time ``t`` is due ``(t - first) / speed`` seconds after
    the first tick was released. Anchored once, so waits never accumulate drift."""

    speed: float | None
    clock: Callable[[], float] = time.monotonic
    _anchor_wall: float | None = None
    _anchor_data: datetime | None = None

    def wait_for(self, data_time: datetime) -> float:
        """Seconds to wait before releasing a tick stamped ``data_time`` (0 if due already)."""
        if self.speed is None:
            return 0.0
        now = self.clock()
        if self._anchor_wall is None or self._anchor_data is None:
            self._anchor_wall, self._anchor_data = now, data_time
            return 0.0
        due = self._anchor_wall + (data_time - self._anchor_data).total_seconds() / self.speed
        return max(0.0, due - now)


def paced(
    ticks: Iterable[T],
    speed: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    *,
    time_of: Callable[[T], datetime] = attrgetter("time"),
) -> Iterator[T]:
    """Release ``ticks`` at ``speed`` times real time; ``None`` releases them at once.
    ``time_of``: an item's data time (a tick's ``time``)."""
    if speed is None:
        yield from ticks
        return
    pacer = Pacer(speed=speed, clock=clock)
    for tick in ticks:
        wait = pacer.wait_for(time_of(tick))
        if wait > 0:
            sleep(wait)
        yield tick
