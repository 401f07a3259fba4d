"""What the fleet tests replay: the real ESZ13 day and the sessions that trade it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import cache

from tests.kit.snapshots import CONTRACT
from trading.market import Tick
from workers.feeds.replay import ReplayConfig, ReplaySource
from workers.sessions.create import NewSession
from workers.settings import DEFAULT_MARKET_DATA_DIR

PRODUCT = "ES"
REPLAY_DAY = date(2013, 10, 7)


StrategySpec = tuple[str, tuple[tuple[str, str], ...]]
"""A strategy and its arguments, e.g. ``("sma_cross", (("fast", "3"), ("slow", "8")))``."""
ACTIVE: StrategySpec = ("sma_cross", (("fast", "3"), ("slow", "8")))
"""A strategy that trades often on the replay (its warm-up is 8 candles)."""


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """One session to create: each on its own account, so the broker's account position is
    the session's own."""

    name: str
    account: str
    strategy: str
    args: tuple[tuple[str, str], ...]
    timeframe: str = "1m"
    quantity: int = 1
    broker: str = "paper"

    def request(self) -> NewSession:
        return NewSession(
            name=self.name,
            account=self.account,
            product=PRODUCT,
            contract=CONTRACT,
            strategy=self.strategy,
            strategy_args=dict(self.args),
            timeframe=self.timeframe,
            quantity=self.quantity,
            broker=self.broker,
        )


DEFAULT_PLANS: tuple[SessionPlan, ...] = (
    SessionPlan("sma-fast", "ACC-SMA", *ACTIVE),
    SessionPlan("breakout", "ACC-BRK", "breakout", (("lookback", "10"),)),
)
TRAILING = SessionPlan(
    "trailing", "ACC-TRL", "breakout", (("lookback", "10"), ("atr_mult", "3"), ("trail", "2"))
)
"""A breakout whose stop trails the close: it moves its protective stop many times a day."""
REFERENCE_PLANS: tuple[SessionPlan, ...] = (*DEFAULT_PLANS, TRAILING)
"""The sessions of the reference run (one for all the tick-path tests: every run compares
the sessions it has with the reference's)."""


@cache
def replay_ticks(day: date = REPLAY_DAY) -> tuple[Tick, ...]:
    """The real ESZ13 replay of one day (about 5,500 ticks), read once per process."""
    config = ReplayConfig(product=PRODUCT, contract=CONTRACT, date_from=day, date_to=day)
    return tuple(ReplaySource(config, data_dir=DEFAULT_MARKET_DATA_DIR).ticks())


def first_tick_time() -> datetime:
    """Data time of the first replay tick: orders decided then fill on the published ticks."""
    return replay_ticks()[0].time
