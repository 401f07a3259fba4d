"""A session's orders as the pure decisions read and make them.

The literal types of an order (its side, type, status, intent, time in force) are defined here
once; ``models.state`` stores them. The decisions of ``trading.stops`` and ``trading.decision``
read a session's working orders and position through ``OrderView`` and ``PositionView``:
``models.state.WorkingOrder`` and ``OpenPosition`` are such views as they are (no conversion on
the tick path), and so is ``Order``, the order a decision makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from trading.intents import Side

OrderType = Literal["market", "limit", "stop"]
TimeInForce = Literal["day", "gtc", "ioc"]
OrderStatus = Literal[
    "new", "sent", "working", "partially_filled", "filled", "cancelled", "rejected", "lost"
]
Intent = Literal["entry", "exit", "roll"]

OPEN_STATUSES = frozenset({"new", "sent", "working", "partially_filled"})
"""The statuses of an order that may still fill."""


class OrderView(Protocol):
    """What a decision reads of one of the session's working orders."""

    @property
    def client_order_id(self) -> str: ...

    @property
    def contract(self) -> str: ...

    @property
    def side(self) -> Side: ...

    @property
    def quantity(self) -> int: ...

    @property
    def order_type(self) -> OrderType: ...

    @property
    def intent(self) -> Intent: ...

    @property
    def status(self) -> OrderStatus: ...

    @property
    def created_at(self) -> datetime: ...

    @property
    def filled_quantity(self) -> int: ...

    @property
    def stop_price(self) -> Decimal | None: ...


class PositionView(Protocol):
    """What a decision reads of the session's open position (signed quantity)."""

    @property
    def contract(self) -> str: ...

    @property
    def quantity(self) -> int: ...

    @property
    def stop_price(self) -> Decimal | None: ...

    @property
    def opened_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class Order:
    """An order a decision made (or one of the session's with a stop it moved): decided at
    ``created_at`` (data time)."""

    client_order_id: str
    contract: str
    side: Side
    quantity: int
    order_type: OrderType
    intent: Intent
    created_at: datetime
    stop_price: Decimal | None = None
    status: OrderStatus = "new"
    filled_quantity: int = 0

    @classmethod
    def of(cls, order: OrderView, stop_price: Decimal | None) -> Order:
        """``order`` with its stop at ``stop_price``."""
        return cls(
            order.client_order_id,
            order.contract,
            order.side,
            order.quantity,
            order.order_type,
            order.intent,
            order.created_at,
            stop_price,
            order.status,
            order.filled_quantity,
        )


@dataclass(frozen=True, slots=True)
class Position:
    """The session's position with a stop a decision moved."""

    contract: str
    quantity: int
    stop_price: Decimal | None
    opened_at: datetime | None

    @classmethod
    def of(cls, position: PositionView, stop_price: Decimal | None) -> Position:
        """``position`` with its stop at ``stop_price``."""
        return cls(position.contract, position.quantity, stop_price, position.opened_at)


__all__ = [
    "OPEN_STATUSES",
    "Intent",
    "Order",
    "OrderStatus",
    "OrderType",
    "OrderView",
    "Position",
    "PositionView",
    "Side",
    "TimeInForce",
]
