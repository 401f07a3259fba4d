"""The brokers the fleet-level conformance suite runs over: what a fleet of real workers needs to
trade through each, and the few things a test does at the broker behind the fleet's back.

A ``FleetVenue`` is a broker by its registered name plus the account the test's sessions use:
the fleet's settings for it (``overrides``), the adapter as the fleet builds it (``broker``),
an order placed outside tradefleet (``external_order``: the paper broker reached directly; for
Tradovate a REST ``placeorder`` without ``clOrdId``), how many orders the broker ever created
on the account (``orders_created``), waiting until the broker's market has seen a print
(``seen``: the local Tradovate server tails the same instrument streams; the paper broker reads
them when it matches), and an outage the broker's way (``outage_env`` for the workers that
meet it, ``outage`` around it: the paper broker's Redis unreachable; the Tradovate server in
a maintenance window, its queries answering 503).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.kit.fleet import Fleet
from tests.kit.snapshots import CONTRACT
from tests.kit.tradovate_local import LocalTradovate, fleet_overrides
from tests.kit.wait import wait_until
from workers.brokers.base import AccountManager
from workers.brokers.commands import PlaceOrder, QueryPositions
from workers.brokers.paper.broker import PaperBroker
from workers.brokers.registry import build_broker
from workers.brokers.tradovate.symbols import to_tradovate
from workers.tools.bench.env import free_port

ACCOUNT = "ACC-CONF"
STARTING_CASH = Decimal("100000")
COMMISSION = Decimal("2.50")
"""Per contract and side, at both brokers (the paper broker's default, the server's
``--commission``)."""


class FleetVenue(ABC):
    """One broker as a fleet trades through it."""

    name: str
    account: str = ACCOUNT

    def overrides(self) -> dict[str, Any]:
        """The fleet's settings for this broker (by their variables' names)."""
        return {}

    def broker(self, rig: Fleet) -> AccountManager:
        """The adapter of the account, built as the fleet's workers build it."""
        return build_broker(self.name, {"account": self.account}, rig.settings)

    def positions(self, rig: Fleet) -> dict[str, int]:
        return self.broker(rig).positions(QueryPositions(self.account))

    @abstractmethod
    def external_order(
        self,
        rig: Fleet,
        side: str,
        quantity: int,
        order_type: str,
        decided_at: datetime,
        limit: Decimal | None = None,
    ) -> str:
        """Place an order at the broker outside tradefleet (no session, no client order id of
        ours); the client order id the fleet knows it by."""

    @abstractmethod
    def orders_created(self, rig: Fleet) -> int:
        """How many orders the broker ever created on the account."""

    def seen(self, rig: Fleet, when: datetime) -> None:  # noqa: B027
        """Return once the broker's market has a print at ``when`` or later (nothing to wait
        for where the broker reads the streams when it matches)."""

    def outage_env(self) -> dict[str, str]:
        """Variables of a worker that meets the broker in its outage."""
        return {}

    @contextmanager
    def outage(self) -> Iterator[None]:
        yield

    def close(self) -> None:  # noqa: B027
        """Release what the venue holds."""


class PaperFleetVenue(FleetVenue):
    """The paper broker: its truth in db 1 of the fleet's Redis."""

    name = "paper"

    def __init__(self) -> None:
        self._external = 0

    def external_order(
        self,
        rig: Fleet,
        side: str,
        quantity: int,
        order_type: str,
        decided_at: datetime,
        limit: Decimal | None = None,
    ) -> str:
        broker = self.broker(rig)
        assert isinstance(broker, PaperBroker)
        self._external += 1
        coid = f"outsider-{self._external}"
        broker.place_order(
            PlaceOrder(
                account=self.account,
                session_id="",
                client_order_id=coid,
                contract=CONTRACT,
                side=side,  # type: ignore[arg-type]
                quantity=quantity,
                order_type=order_type,  # type: ignore[arg-type]
                limit_price=limit,
                decided_at=decided_at,
            )
        )
        return coid

    def orders_created(self, rig: Fleet) -> int:
        return rig.broker_seq(self.account)

    def outage_env(self) -> dict[str, str]:
        return {"TRADEFLEET_PAPER_BROKER_URL": f"redis://127.0.0.1:{free_port()}/1"}


class TradovateFleetVenue(FleetVenue):
    """The Tradovate adapter against the local server (its own process and truth), whose
    market is the fleet's instrument streams (``--market-redis``)."""

    name = "tradovate"

    def __init__(self, redis_url: str, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.server = LocalTradovate.start(
            workdir,
            "--market-redis",
            redis_url,
            "--account",
            f"{self.account}:{STARTING_CASH}",
            "--commission",
            str(COMMISSION),
        )
        self._token: str | None = None

    def overrides(self) -> dict[str, Any]:
        return dict(fleet_overrides(self.server))

    def _rest(self, path: str, body: Any = None) -> Any:
        if self._token is None:
            self._token = str(self.server.token()["accessToken"])
        return self.server.v1("GET" if body is None else "POST", path, body, self._token)

    def external_order(
        self,
        rig: Fleet,
        side: str,
        quantity: int,
        order_type: str,
        decided_at: datetime,
        limit: Decimal | None = None,
    ) -> str:
        # POST /order/placeorder as a trader's own platform sends it: no clOrdId, no text
        # (https://partner.tradovate.com/api/rest-api-endpoints/orders/place-order.md).
        (account,) = [a for a in self._rest("account/list") if a["name"] == self.account]
        body: dict[str, Any] = {
            "accountSpec": self.account,
            "accountId": account["id"],
            "action": "Buy" if side == "buy" else "Sell",
            "symbol": to_tradovate(CONTRACT),
            "orderQty": quantity,
            "orderType": {"market": "Market", "limit": "Limit"}[order_type],
            "timeInForce": "Day",
            "isAutomated": False,
        }
        if limit is not None:
            body["price"] = str(limit)
        answer = self._rest("order/placeorder", body)
        assert "orderId" in answer, answer
        return f"TV-{answer['orderId']}"

    def orders_created(self, rig: Fleet) -> int:
        (account,) = [a for a in self._rest("account/list") if a["name"] == self.account]
        orders = self.server.control("GET", "state")["orders"]
        return sum(1 for o in orders if o["accountId"] == account["id"])

    def seen(self, rig: Fleet, when: datetime) -> None:
        def has_it() -> bool:
            markets = self.server.control("GET", "state")["markets"]
            return any(q is not None and _time(q["timestamp"]) >= when for q in markets.values())

        wait_until(has_it, timeout=15, what=f"the Tradovate server's market at {when}")

    @contextmanager
    def outage(self) -> Iterator[None]:
        self.server.control("POST", "faults", {"maintenance": True})
        try:
            yield
        finally:
            self.server.control("POST", "faults", {"maintenance": False})

    def close(self) -> None:
        self.server.stop()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
