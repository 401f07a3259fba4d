"""What a recovery builds of the stored types (``models``) from what it read and planned.

The plan's pure pieces (signal sequence, re-warmed candles, the position and its stop price)
are ``trading.recovery``; these build the session's values from them, still without Redis,
SQL, broker or clock:

- ``replay_fills``: trades, realized P&L and commissions from the session's recorded fills.
- ``working_copy``: a durable order row and the broker's view of it → the session's working copy.
- ``build_state``: the whole ``SessionState``.
- ``progress_after``: the tick path's counters of the rebuilt session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from models.progress import TickProgress
from models.state import (
    CollaboratorRef,
    ContractDetails,
    Intent,
    OpenPosition,
    OrderStatus,
    OrderTemplate,
    OrderType,
    PnlInfo,
    SessionInfo,
    SessionState,
    Side,
    StrategyRef,
    Trade,
    WorkingOrder,
)
from trading.contracts import ContractSpec
from trading.positions import apply_fill
from trading.recovery import Position, Rewarmed
from trading.timeframes import Timeframe
from workers.brokers.commands import BrokerOrder

# --------------------------------------------------------------------------- fills and orders


@dataclass(frozen=True, slots=True)
class RecordedFill:
    """One durable fill row of the session, with its order's contract and side."""

    execution_id: str
    client_order_id: str
    contract: str
    quantity: int
    """Signed: positive bought, negative sold."""
    price: Decimal
    commission: Decimal
    time: datetime


@dataclass(frozen=True, slots=True)
class FillReplay:
    trades: tuple[Trade, ...]
    realized: Decimal
    commissions: Decimal
    quantity: int
    average_price: Decimal | None


def replay_fills(fills: Sequence[RecordedFill], contract: str, multiplier: Decimal) -> FillReplay:
    """Trades (realized P&L per fill) and the position in ``contract`` the fills make."""
    positions: dict[str, tuple[int, Decimal | None]] = {}
    trades: list[Trade] = []
    realized = commissions = Decimal(0)
    for fill in fills:
        held, average = positions.get(fill.contract, (0, None))
        step = apply_fill(held, average, fill.quantity, fill.price, multiplier)
        positions[fill.contract] = (step.quantity, step.average_price)
        realized += step.realized
        commissions += fill.commission
        trades.append(
            Trade(
                execution_id=fill.execution_id,
                client_order_id=fill.client_order_id,
                contract=fill.contract,
                quantity=fill.quantity,
                price=fill.price,
                commission=fill.commission,
                time=fill.time,
                realized_pnl=step.realized,
            )
        )
    quantity, average = positions.get(contract, (0, None))
    return FillReplay(tuple(trades), realized, commissions, quantity, average)


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """A durable order row that is not final (the fields a working copy needs)."""

    client_order_id: str
    contract: str
    side: Side
    quantity: int
    order_type: OrderType
    intent: Intent
    status: OrderStatus
    created_at: datetime
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    broker_order_id: str | None = None


def working_copy(record: OrderRecord, broker: BrokerOrder | None) -> WorkingOrder | None:
    """The working copy of an open order row given the broker's view of it; None when the
    broker holds it as final (filled, cancelled, rejected)."""
    status: OrderStatus = record.status
    filled = 0
    average: Decimal | None = None
    broker_id = record.broker_order_id
    if broker is not None:
        if broker.status != "working":
            return None
        filled = broker.filled_quantity
        average = broker.average_fill_price
        broker_id = broker.broker_order_id
        status = "partially_filled" if filled else "working"
    return WorkingOrder(
        client_order_id=record.client_order_id,
        contract=record.contract,
        side=record.side,
        quantity=record.quantity,
        order_type=record.order_type,
        intent=record.intent,
        status=status,
        created_at=record.created_at,
        filled_quantity=filled,
        limit_price=record.limit_price,
        stop_price=record.stop_price,
        broker_order_id=broker_id,
        average_fill_price=average,
    )


# --------------------------------------------------------------------------- the state


@dataclass(frozen=True, slots=True)
class Definition:
    """The session's configuration, from its ``trading_sessions`` row."""

    session: SessionInfo
    strategy: str
    strategy_args: dict[str, Any]
    strategy_initial_state: dict[str, Any]
    warmup_periods: int
    market_data_source: CollaboratorRef
    account_manager: CollaboratorRef
    order_template: OrderTemplate
    spec: ContractSpec


def build_state(
    definition: Definition,
    contract: str,
    timeframe: Timeframe,
    strategy_state: dict[str, Any],
    position: Position,
    orders: Mapping[str, WorkingOrder],
    fills: FillReplay,
    balance: Decimal,
    warmed: Rewarmed,
    max_trades: int,
    rolling: bool = False,
) -> SessionState:
    """The rebuilt state (runtime data from the broker, history from SQL, candles re-warmed)."""
    spec = definition.spec
    held = OpenPosition(
        contract=contract,
        quantity=position.quantity,
        average_price=position.average_price if position.quantity else None,
        opened_at=position.opened_at if position.quantity else None,
        stop_price=position.stop_price if position.quantity else None,
    )
    unrealized = Decimal(0)
    if held.quantity and held.average_price is not None and warmed.partial is not None:
        unrealized = (warmed.partial.close - held.average_price) * held.quantity * spec.multiplier
    last_trade = fills.trades[-1].time if fills.trades else None
    return SessionState(
        session=definition.session,
        strategy=StrategyRef(
            module=definition.strategy, args=definition.strategy_args, state=strategy_state
        ),
        market_data_source=definition.market_data_source,
        account_manager=definition.account_manager,
        contract_details=ContractDetails(
            symbol=contract,
            product=definition.session.product,
            multiplier=spec.multiplier,
            tick_size=spec.tick_size,
        ),
        candle_key=f"{contract}:{timeframe.name}",
        orders=dict(orders),
        trades=fills.trades[-max_trades:],
        open_position=held,
        candles=warmed.closed,
        account_pnl_info=PnlInfo(
            realized=fills.realized,
            unrealized=unrealized,
            commissions=fills.commissions,
            as_of=last_trade,
        ),
        account_balance=balance,
        order_template=definition.order_template,
        latest_partial_candle=warmed.partial,
        warmup_periods=definition.warmup_periods,
        rolling=rolling,
    )


def progress_after(
    warmed: Rewarmed,
    timeframe: Timeframe,
    signal_seq: int,
    snapshot_closed: int | None,
    snapshot_last_ms: int | None,
) -> TickProgress:
    """The tick path's counters of the rebuilt session (``_progress``)."""
    if snapshot_closed is None:
        closed = len(warmed.closed)
    else:
        closed = max(
            snapshot_closed + warmed.closed_after(snapshot_last_ms, timeframe), len(warmed.closed)
        )
    last_ms = warmed.last_ms if warmed.last_ms is not None else snapshot_last_ms
    return TickProgress(
        last_ms=last_ms,
        signal_seq=signal_seq,
        candles_closed=closed,
        ticks_processed=warmed.ticks,
        rejected=dict(warmed.rejected),
    )


__all__ = [
    "Definition",
    "FillReplay",
    "OrderRecord",
    "RecordedFill",
    "build_state",
    "progress_after",
    "replay_fills",
    "working_copy",
]
