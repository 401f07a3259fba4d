"""Stall watch of a live feed: while the market is open, no bar or quote for ``stall_s``
→ one ``feed`` event and the instrument's stall flag (``workers.risk.feed_stall``: the tick
path refuses entries, exits pass); the first data after that → the flag cleared and one event.

``StallRule`` is the pure state machine (time is an argument); ``StallWatch`` runs it on a
thread of its own, so a feed that cannot even connect (back-off, refused) is watched too.
Quiet time starts counting when the market opens: a feed silent over a weekend is not stalled
the minute Globex reopens, only ``stall_s`` later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import redis
from sqlalchemy import Engine

from trading.events import Severity
from workers.db.event_rows import record_event
from workers.risk.feed_stall import clear_stalled, set_stalled

log = logging.getLogger(__name__)

Change = Literal["stalled", "flowing"]


@dataclass
class StallRule:
    """Pure: ``data(now)`` on every bar or quote, ``check(now, market_open)`` periodically;
    each returns the change to act on, if any."""

    stall_s: float
    quiet_since: float | None = None
    stalled: bool = False

    def data(self, now: float) -> Change | None:
        self.quiet_since = now
        if self.stalled:
            self.stalled = False
            return "flowing"
        return None

    def check(self, now: float, market_open: bool) -> Change | None:
        if not market_open or self.quiet_since is None:
            if not self.stalled:
                self.quiet_since = now
            return None
        if not self.stalled and now - self.quiet_since >= self.stall_s:
            self.stalled = True
            return "stalled"
        return None


class StallWatch:
    """Runs ``StallRule`` for one instrument; ``data()`` from the feed's thread."""

    def __init__(
        self,
        client: redis.Redis,
        engine: Engine | None,
        instrument: str,
        stall_s: float,
        market_open: Callable[[datetime], bool],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        interval_s: float = 1.0,
    ) -> None:
        self.client = client
        self.engine = engine
        self.instrument = instrument
        self.market_open = market_open
        self.clock = clock
        self.wall = wall
        self.interval_s = min(interval_s, max(stall_s / 4, 0.05))
        self.rule = StallRule(stall_s, quiet_since=clock())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def data(self) -> None:
        # The lock covers the change and its effects: a stall and the recovery right after
        # it are flagged, cleared and recorded in that order.
        with self._lock:
            change = self.rule.data(self.clock())
            if change is not None:
                self._act(change)

    def check(self) -> None:
        with self._lock:
            change = self.rule.check(self.clock(), self.market_open(self.wall()))
            if change is not None:
                self._act(change)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception as exc:  # the watch must outlive a Redis or SQL hiccup
                log.warning("stall watch %s: %s", self.instrument, type(exc).__name__)

    def _act(self, change: Change) -> None:
        now = self.wall()
        stall_s = self.rule.stall_s
        details = {"instrument": self.instrument, "stall_s": stall_s, "at": now.isoformat()}
        severity: Severity
        if change == "stalled":
            set_stalled(self.client, self.instrument, now, stall_s)
            message = (
                f"market data of {self.instrument} stalled: nothing for {stall_s:g}s while "
                "the market is open; entries refused until data flows again"
            )
            severity = "warning"
        else:
            clear_stalled(self.client, self.instrument)
            message = f"market data of {self.instrument} flows again; entries allowed"
            severity = "info"
        log.warning("%s", message)
        if self.engine is not None:
            record_event(self.engine, None, "feed", severity, message, details)
