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
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.kit.redis import paper_url
from tests.kit.tradovate_local import CID, PASSWORD, SEC, USER, LocalTradovate
from tests.kit.wait import wait_until
from workers.brokers.base import AccountManager
from workers.brokers.paper.broker import PaperBroker, PaperConfig
from workers.brokers.tradovate.broker import TradovateBroker, tradovate_broker
from workers.settings import TradovateSettings
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


def tradovate_settings(server: LocalTradovate) -> TradovateSettings:
    """The adapter's settings for the local server, with the server's test credentials."""
    values: dict[str, Any] = {
        "rest_url": server.rest,
        "ws_url": server.ws_url,
        "md_ws_url": server.md_url,
        "username": USER,
        "password": PASSWORD,
        "app_id": "tradefleet-tests",
        "cid": int(CID),
        "sec": SEC,
    }
    return TradovateSettings.model_validate(values)


class TradovateVenue(Venue):
    """The Tradovate adapter against the local Tradovate server (its own process and truth),
    whose market is the same instrument streams (``--market-redis``)."""

    def __init__(self, redis_url: str, workdir: Path, account: str = "DEMO0001") -> None:
        self.server = LocalTradovate.start(
            workdir,
            "--market-redis",
            redis_url,
            "--account",
            f"{account}:{STARTING_CASH}",
            "--commission",
            str(COMMISSION),
        )
        market = redis.Redis.from_url(redis_url)
        broker = tradovate_broker(tradovate_settings(self.server), market, account)
        super().__init__("tradovate", broker, account, market, True)

    def trade(self, when: datetime, price: str, contract: str = "ESZ13", **touch: str) -> None:
        """Print the trade, and return once the server's market has it (a live broker fills
        at the market it has seen)."""
        super().trade(when, price, contract, **touch)
        stamp = when.isoformat().replace("+00:00", "Z")

        def seen() -> bool:
            markets = self.server.control("GET", "state")["markets"]
            return any(
                q is not None and _same_time(q["timestamp"], stamp) for q in markets.values()
            )

        wait_until(seen, timeout=10, what=f"the server's market at {stamp}")

    @contextmanager
    def outage(self) -> Iterator[None]:
        self.server.control("POST", "faults", {"maintenance": True})
        try:
            yield
        finally:
            self.server.control("POST", "faults", {"maintenance": False})

    def close(self) -> None:
        assert isinstance(self.broker, TradovateBroker)
        self.market.close()
        self.server.stop()


def _same_time(a: str, b: str) -> bool:
    return datetime.fromisoformat(a.replace("Z", "+00:00")) == datetime.fromisoformat(
        b.replace("Z", "+00:00")
    )
