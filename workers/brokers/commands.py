"""One frozen command per account-manager call, and the values brokers answer with.

Commands validate themselves at construction (``BadInput``, nothing sent): quantities are
positive, a limit order has a limit price, a stop order a stop price, times are aware and are
normalised to UTC. Money and prices are ``Decimal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from models.state import OrderType, Side, TimeInForce
from trading.exceptions import BadInput

BrokerStatus = Literal["working", "filled", "cancelled", "rejected", "unknown"]
"""An order's status as the broker sees it; ``unknown``: the broker has no such order."""

SIDES: frozenset[str] = frozenset({"buy", "sell"})
ORDER_TYPES: frozenset[str] = frozenset({"market", "limit", "stop"})
TIMES_IN_FORCE: frozenset[str] = frozenset({"day", "gtc", "ioc"})


def utc(value: datetime, what: str) -> datetime:
    """``value`` as aware UTC; a naive datetime is ``BadInput``."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise BadInput(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _text(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise BadInput(f"{what} must be a non-empty string")


def _price(value: Decimal | None, what: str) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise BadInput(f"{what} must be a positive Decimal, got {value!r}")


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Send one order. ``decided_at`` (keyword) is the DATA time at which it was decided."""

    account: str
    session_id: str
    client_order_id: str
    contract: str
    side: Side
    quantity: int
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = "day"
    decided_at: datetime = field(kw_only=True)
    parent_client_order_id: str | None = field(default=None, kw_only=True)
    """One-triggers-other: this order works only once that order (of the same account) has
    filled, from its fill on; it is cancelled if that order ends unfilled (a protective stop
    attached to its entry)."""
    attached_stop: PlaceOrder | None = field(default=None, kw_only=True)
    """The protective stop decided with this entry, sent WITH it as one order-sends-order
    (OSO): a broker that holds brackets rests it from the entry's fill on even if no worker
    is running. Its ``parent_client_order_id`` is this order's id; same account, session,
    contract and quantity, the opposite side, a stop order."""

    def __post_init__(self) -> None:
        _text(self.account, "account")
        _text(self.client_order_id, "client_order_id")
        _text(self.contract, "contract")
        if not isinstance(self.session_id, str):
            raise BadInput("session_id must be a string")
        if self.side not in SIDES:
            raise BadInput(f"side must be buy or sell, got {self.side!r}")
        if self.order_type not in ORDER_TYPES:
            raise BadInput(f"order_type must be market, limit or stop, got {self.order_type!r}")
        if self.time_in_force not in TIMES_IN_FORCE:
            raise BadInput(f"time_in_force must be day, gtc or ioc, got {self.time_in_force!r}")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise BadInput(f"quantity must be an int, got {self.quantity!r}")
        if self.quantity <= 0:
            raise BadInput(f"quantity must be > 0, got {self.quantity}")
        if self.order_type == "limit":
            _price(self.limit_price, "limit_price")
        elif self.limit_price is not None:
            raise BadInput(f"a {self.order_type} order takes no limit_price")
        if self.order_type == "stop":
            _price(self.stop_price, "stop_price")
        elif self.stop_price is not None:
            raise BadInput(f"a {self.order_type} order takes no stop_price")
        object.__setattr__(self, "decided_at", utc(self.decided_at, "decided_at"))
        if self.attached_stop is not None:
            _check_attached(self, self.attached_stop)

    @property
    def signed_quantity(self) -> int:
        """Positive for a buy, negative for a sell."""
        return self.quantity if self.side == "buy" else -self.quantity


def _check_attached(entry: PlaceOrder, stop: PlaceOrder) -> None:
    if not isinstance(stop, PlaceOrder):
        raise BadInput(f"attached_stop must be a PlaceOrder, got {stop!r}")
    if stop.parent_client_order_id != entry.client_order_id:
        raise BadInput(f"attached stop {stop.client_order_id} is not attached to this order")
    if stop.order_type != "stop" or stop.side == entry.side or stop.attached_stop is not None:
        raise BadInput(f"attached stop {stop.client_order_id} must be a stop on the other side")
    same = ("account", "session_id", "contract", "quantity")
    differing = [name for name in same if getattr(stop, name) != getattr(entry, name)]
    if differing:
        raise BadInput(f"attached stop {stop.client_order_id} differs in {', '.join(differing)}")


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel one order. ``as_of``: the DATA time the cancel takes effect (the decision that
    asked for it); a broker that simulates the market fills the order first if prices before
    that time reached it. None: now."""

    account: str
    client_order_id: str
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        _text(self.account, "account")
        _text(self.client_order_id, "client_order_id")
        if self.as_of is not None:
            object.__setattr__(self, "as_of", utc(self.as_of, "as_of"))


@dataclass(frozen=True, slots=True)
class QueryOrder:
    account: str
    client_order_id: str

    def __post_init__(self) -> None:
        _text(self.account, "account")
        _text(self.client_order_id, "client_order_id")


@dataclass(frozen=True, slots=True)
class QueryPositions:
    account: str

    def __post_init__(self) -> None:
        _text(self.account, "account")


@dataclass(frozen=True, slots=True)
class QueryOpenOrders:
    account: str

    def __post_init__(self) -> None:
        _text(self.account, "account")


@dataclass(frozen=True, slots=True)
class QueryBalance:
    account: str

    def __post_init__(self) -> None:
        _text(self.account, "account")


@dataclass(frozen=True, slots=True)
class OrderAck:
    """The broker's answer to place/cancel.

    ``status`` is the order's status when the ack was made. ``duplicate``: the request repeated
    an earlier one (same client order id placed again, or an already cancelled order cancelled
    again); nothing new was created or changed.
    """

    client_order_id: str
    broker_order_id: str
    status: BrokerStatus
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """One order as the broker holds it."""

    client_order_id: str
    broker_order_id: str
    session_id: str
    contract: str
    side: Side
    quantity: int
    filled_quantity: int
    order_type: OrderType
    limit_price: Decimal | None
    stop_price: Decimal | None
    status: BrokerStatus
    decided_at: datetime
    time_in_force: TimeInForce = "day"
    average_fill_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``quantity`` is signed: positive bought, negative sold.

    ``execution_id`` is unique and stable: applying a fill is idempotent by it.
    """

    execution_id: str
    client_order_id: str
    broker_order_id: str
    account: str
    session_id: str
    contract: str
    quantity: int
    price: Decimal
    commission: Decimal
    time: datetime


@dataclass(frozen=True, slots=True)
class Balance:
    """The account's money: ``cash`` = starting cash + realized P&L - commissions."""

    account: str
    cash: Decimal
    realized_pnl: Decimal
    commissions: Decimal
