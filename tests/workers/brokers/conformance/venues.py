"""The brokers the conformance suite runs over, each behind one small ``Venue`` face.

A venue is a broker adapter plus the market it trades in: ``trade`` prints a tick to the
instrument stream the way the feed publishes it (streams.md), and both the paper broker and the
local Tradovate server see the same prints. ``work`` lets a broker that matches only when asked
(paper) work its resting orders; a live broker works them by itself. ``outage`` makes the
broker's queries fail the way that broker fails (the paper broker's Redis is unreachable; the
Tradovate server is in a maintenance window).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.kit.redis import paper_url
from workers.brokers.base import AccountManager
from workers.brokers.paper.broker import PaperBroker, PaperConfig
from workers.tools.bench.env import free_port

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = datetime(2013, 12, 2, 14, 30, tzinfo=UTC)
COMMISSION = Decimal("2.50")
STARTING_CASH = Decimal("100000")


def at(seconds: float) -> datetime:
    """``seconds`` after the suite's market open (a trading day of ESZ13)."""
    return T0 + timedelta(seconds=seconds)


@dataclass
class Venue(ABC):
    """A broker under test and its market."""

    name: str
    broker: AccountManager
    account: str
    market: redis.Redis
    live: bool
    """Whether the broker works resting orders by itself (a live broker), or only when asked."""
    _last_ms: dict[str, int] = field(default_factory=dict)

    def trade(self, when: datetime, price: str, contract: str = "ESZ13", **touch: str) -> None:
        """Print a trade at ``price`` (and the touch: ``bid=``, ``ask=``) at data time ``when``."""
        t = (when - EPOCH) // timedelta(milliseconds=1)
        id_ms = max(t, self._last_ms.get(contract, 0))
        fields = {"t": str(t), "p": price, "s": "1"}
        fields.update({"b" if side == "bid" else "a": value for side, value in touch.items()})
        self.market.xadd(f"md:{{{contract}}}:ticks", fields, id=f"{id_ms}-*")  # type: ignore[arg-type]
        self._last_ms[contract] = id_ms

    def work(self, contract: str = "ESZ13") -> None:
        """Let the broker work its resting orders against the prints so far."""
        if isinstance(self.broker, PaperBroker):
            self.broker.match(contract)

    @abstractmethod
    def outage(self) -> AbstractContextManager[None]:
        """While inside, the broker cannot answer queries."""

    @abstractmethod
    def close(self) -> None:
        """Release what the venue holds."""


class PaperVenue(Venue):
    """The paper broker: its truth in db 1 of the tests' Redis, the market in db 0."""

    def __init__(self, redis_url: str, account: str = "ACC1") -> None:
        market = redis.Redis.from_url(redis_url)
        store = redis.Redis.from_url(paper_url(redis_url))
        config = PaperConfig(commission_per_contract=COMMISSION, starting_cash=STARTING_CASH)
        super().__init__("paper", PaperBroker(store, market, config), account, market, False)
        self._clients = [market, store]

    @contextmanager
    def outage(self) -> Iterator[None]:
        assert isinstance(self.broker, PaperBroker)
        dead = redis.Redis(
            port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
        )
        alive, self.broker._broker = self.broker._broker, dead
        try:
            yield
        finally:
            self.broker._broker = alive
            dead.close()

    def close(self) -> None:
        for client in self._clients:
            client.close()
