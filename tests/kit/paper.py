"""The paper broker of a test's account, and orders sent to it directly (no task, no delivery)."""

from __future__ import annotations

from decimal import Decimal

from tests.kit.replay import first_tick_time
from tests.kit.snapshots import CONTRACT
from workers.brokers.commands import PlaceOrder
from workers.brokers.paper.broker import PaperBroker
from workers.runtime import Runtime
from workers.stops.sync import parent_of


def paper(rt: Runtime, account: str) -> PaperBroker:
    """The paper broker of ``account`` as ``rt`` builds it."""
    broker = rt.broker("paper", {"account": account})
    assert isinstance(broker, PaperBroker)
    return broker


def place(
    broker: PaperBroker,
    account: str,
    session_id: str,
    coid: str,
    side: str = "buy",
    order_type: str = "market",
    limit: str | None = None,
    stop: str | None = None,
) -> str:
    """Send an order decided at the first replay tick to the paper broker directly (no task,
    no delivery); its status. A stop attached to an entry (by its id) is sent attached to it,
    good till cancelled."""
    ack = broker.place_order(
        PlaceOrder(
            account=account,
            session_id=session_id,
            client_order_id=coid,
            contract=CONTRACT,
            side=side,  # type: ignore[arg-type]
            quantity=1,
            order_type=order_type,  # type: ignore[arg-type]
            limit_price=None if limit is None else Decimal(limit),
            stop_price=None if stop is None else Decimal(stop),
            time_in_force="gtc" if order_type == "stop" else "day",
            decided_at=first_tick_time(),
            parent_client_order_id=parent_of(coid),
        )
    )
    return ack.status
