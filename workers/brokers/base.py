"""The account-manager (broker) protocol every broker adapter implements.

One method per command (``workers.brokers.commands``). A broker that cannot answer raises
``trading.exceptions.ServiceUnavailable``; it never answers "flat", "no orders" or "no fills"
on failure, because reconciliation would read that as the truth.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol, runtime_checkable

from workers.brokers.commands import (
    Balance,
    BrokerOrder,
    CancelOrder,
    Fill,
    OrderAck,
    PlaceOrder,
    QueryBalance,
    QueryOpenOrders,
    QueryOrder,
    QueryPositions,
)

FILLS_START = "0-0"
"""The cursor before the first fill of an account; ``""`` is accepted as the same."""


@runtime_checkable
class AccountManager(Protocol):
    """A broker account manager. Every method may raise ``ServiceUnavailable``."""

    def place_order(self, command: PlaceOrder) -> OrderAck:
        """Send an order. The same client order id again is refused: the original order's
        ack comes back with ``duplicate=True`` and nothing new is created."""
        ...

    def cancel_order(self, command: CancelOrder) -> OrderAck:
        """Cancel a working order; a filled or unknown order is answered with its status
        (``filled`` / ``unknown``) and nothing changes."""
        ...

    def order(self, command: QueryOrder) -> BrokerOrder | None:
        """The order with this client order id, or ``None`` if the broker has none."""
        ...

    def positions(self, command: QueryPositions) -> dict[str, int]:
        """Contract → signed quantity (positive long, negative short); flat contracts omitted."""
        ...

    def open_orders(self, command: QueryOpenOrders) -> list[BrokerOrder]:
        """Every working order of the account."""
        ...

    def balance(self, command: QueryBalance) -> Balance:
        """Cash, realized P&L and commissions of the account."""
        ...

    def fills_since(self, account: str, cursor: str) -> tuple[list[Fill], str]:
        """Fills of ``account`` after ``cursor`` (exclusive), oldest first, at most one batch
        (``fills_batch``), and the cursor to pass next time (unchanged when there is nothing
        new). Start from ``FILLS_START``; call again while a whole batch comes back to catch
        up (fewer held every fill there was)."""
        ...

    @property
    def fills_batch(self) -> int:
        """The most fills one ``fills_since`` answers."""
        ...


@runtime_checkable
class StopModifier(Protocol):
    """A broker that moves a resting stop in place (one modify, the stop rests throughout),
    beyond the protocol. Without it a stop moves by cancel, then place."""

    def modify_stop(
        self,
        account: str,
        client_order_id: str,
        stop_price: Decimal,
        new_client_order_id: str | None = None,
    ) -> OrderAck:
        """Move the working stop ``client_order_id`` to ``stop_price``; with
        ``new_client_order_id`` it goes by that id from then on and the old id answers
        ``cancelled``. ``working`` when moved; a stop that filled first answers ``filled``;
        a refused move ``rejected`` (nothing changed)."""
        ...


def works_in_data_time(broker: AccountManager) -> bool:
    """Whether ``broker`` works resting orders in data time when asked (the paper broker's
    ``match_order``): a stop the session saw touched in the data is filled at that touch,
    whenever its fill comes back, and it ends a stop unfilled only when the fleet cancels it
    or its entry ended unfilled. A live broker works orders on its own market, and may not."""
    return callable(getattr(broker, "match_order", None))
