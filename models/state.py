"""The session-state struct of DESIGN.md as typed, frozen values.

Field names are the original design's (``trading?`` and ``rolling?`` are spelt ``trading`` and
``rolling``). The exact Redis codec lives in ``models.codec``; the store in ``workers.state``.

Categories (DESIGN.md): runtime data are working copies corrected by reconciliation;
collaborator references name a registered strategy / feed / broker plus its args; operational
flags say what the session may do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeAlias

from trading import orders as trading_orders
from trading.market import Candle

JsonValue = Any
"""A JSON-compatible value (dict / list / str / int / bool / None); Decimals as strings."""

Side: TypeAlias = trading_orders.Side
OrderType: TypeAlias = trading_orders.OrderType
TimeInForce: TypeAlias = trading_orders.TimeInForce
OrderStatus: TypeAlias = trading_orders.OrderStatus
Intent: TypeAlias = trading_orders.Intent
"""An order's literal types, defined with the orders decisions make (``trading.orders``)."""


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Who the session is: the ``session`` field."""

    id: str
    name: str
    account: str
    product: str
    contract: str
    timeframe: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    """The session's working copy of one order (SQL holds the durable row)."""

    client_order_id: str
    contract: str
    side: Side
    quantity: int
    order_type: OrderType
    intent: Intent
    status: OrderStatus
    created_at: datetime
    filled_quantity: int = 0
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    broker_order_id: str | None = None
    average_fill_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Trade:
    """A fill applied to the session (idempotent by ``execution_id``)."""

    execution_id: str
    client_order_id: str
    contract: str
    quantity: int
    """Signed: positive bought, negative sold."""
    price: Decimal
    commission: Decimal
    time: datetime
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """Signed quantity (positive long, negative short) in ``contract``."""

    contract: str
    quantity: int = 0
    average_price: Decimal | None = None
    stop_price: Decimal | None = None
    opened_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StrategyRef:
    """Registered strategy name, its args, and its own JSON state."""

    module: str
    args: dict[str, JsonValue] = field(default_factory=dict)
    state: dict[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CollaboratorRef:
    """A registered market-data source or account manager, and its args."""

    module: str
    args: dict[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PnlInfo:
    """The ``account_pnl_info`` field: realized and unrealized P&L of this session."""

    realized: Decimal = Decimal("0")
    unrealized: Decimal = Decimal("0")
    commissions: Decimal = Decimal("0")
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class OrderTemplate:
    """How signals become orders: type, quantity per unit of signal, time in force."""

    order_type: OrderType = "market"
    quantity: int = 1
    time_in_force: TimeInForce = "day"


@dataclass(frozen=True, slots=True)
class ContractDetails:
    """The contract the session trades now."""

    symbol: str
    product: str
    multiplier: Decimal
    tick_size: Decimal
    expiry: date | None = None


@dataclass(frozen=True, slots=True)
class SessionState:
    """The whole state struct of one session, every field of DESIGN.md."""

    session: SessionInfo
    strategy: StrategyRef
    market_data_source: CollaboratorRef
    account_manager: CollaboratorRef
    contract_details: ContractDetails
    candle_key: str
    trading: bool = True
    orders: dict[str, WorkingOrder] = field(default_factory=dict)
    trades: tuple[Trade, ...] = ()
    open_position: OpenPosition | None = None
    candles: tuple[Candle, ...] = ()
    account_pnl_info: PnlInfo = field(default_factory=PnlInfo)
    account_balance: Decimal | None = None
    order_template: OrderTemplate = field(default_factory=OrderTemplate)
    latest_partial_candle: Candle | None = None
    warmup_periods: int = 0
    portfolio_heat: Decimal = Decimal("0")
    portfolio_heat_warned: bool = False
    portfolio_heat_blocked: bool = False
    rolling: bool = False
    rolling_close_order_id: str | None = None
    rolling_close_qty: int | None = None


STATE_FIELDS: tuple[str, ...] = (
    "session",
    "trading",
    "orders",
    "trades",
    "open_position",
    "candles",
    "strategy",
    "market_data_source",
    "account_manager",
    "account_pnl_info",
    "account_balance",
    "order_template",
    "latest_partial_candle",
    "candle_key",
    "contract_details",
    "warmup_periods",
    "portfolio_heat",
    "portfolio_heat_warned",
    "portfolio_heat_blocked",
    "rolling",
    "rolling_close_order_id",
    "rolling_close_qty",
)
"""Every field of the state struct, in DESIGN.md's order."""
