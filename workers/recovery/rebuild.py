"""The pure pieces of a recovery: no Redis, no SQL, no broker, no clock.

- ``signal_seq_after``: the sequence a rebuilt session continues from, past every client order
  id it ever used (``<hash>-<seq>-<leg>``, ``trading.intents.client_order_id``), so no client
  order id is ever reused for a different order.
- ``history_window`` / ``rewarm``: which stream entries to fold, and the candles they make,
  without running the strategy.
- ``replay_fills``: trades, realized P&L and commissions from the session's recorded fills.
- ``working_copy``: a durable order row and the broker's view of it → the session's working copy.
- ``stop_price_for``: the stop price a rebuilt position keeps (its protective stop still open).
- ``build_state``: the whole ``SessionState``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

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
from trading.candles import UNPARSEABLE, fold_ticks, validate_tick
from trading.contracts import ContractSpec
from trading.intents import client_order_id
from trading.market import EPOCH, Candle, StreamEntry, Tick, entry_to_tick
from trading.positions import apply_fill
from trading.timeframes import Timeframe
from workers.brokers.commands import BrokerOrder
from workers.ticks.step import TickProgress

_COID = re.compile(r"^([0-9a-f]{16})-(?:(\d+)-\d+|move-(\d+))$")
"""A signal's order ``<hex>-<seq>-<leg>``, or its stop move ``<hex>-move-<seq>``."""


# --------------------------------------------------------------------------- signal sequence


def max_signal_seq(session_id: str, client_order_ids: Iterable[str]) -> int:
    """The highest signal sequence among ``client_order_ids`` that belong to ``session_id``
    (other ids, e.g. adopted external orders, are ignored); 0 when there is none."""
    prefix = client_order_id(session_id, 0, 0).split("-", 1)[0]
    highest = 0
    for coid in client_order_ids:
        match = _COID.match(coid)
        if match is not None and match.group(1) == prefix:
            highest = max(highest, int(match.group(2) or match.group(3)))
    return highest


def signal_seq_after(session_id: str, client_order_ids: Iterable[str], snapshot_seq: int) -> int:
    """The signal sequence to continue from: the next signal uses this value + 1."""
    return max(snapshot_seq, max_signal_seq(session_id, client_order_ids))


# --------------------------------------------------------------------------- candles


def entry_id(raw: bytes | str) -> tuple[int, int]:
    """A stream id ``<ms>-<seq>`` as a comparable pair."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _bucket(values: Mapping[bytes, bytes], seconds: int) -> int | None:
    try:
        return int(values[b"t"]) // (seconds * 1000)
    except (KeyError, ValueError):
        return None


def history_window(
    newest_first: Sequence[StreamEntry],
    timeframe: Timeframe,
    need: int,
    since: str | None,
    max_candles: int,
    at_stream_start: bool,
) -> tuple[bool, list[StreamEntry]]:
    """Whether ``newest_first`` (entries read back from the stream's end) reaches far enough,
    and the entries to fold, oldest first, cut at a candle boundary.

    Far enough: the newest (partial) candle and ``need`` whole ones before it, and every candle
    back to the one holding ``since`` (the snapshot's cursor), at most ``max_candles`` + 1. The
    oldest candle read is whole only at the stream's start (else it may be only its end), so
    it counts only there. At the stream's start, whatever there is is enough.
    """
    order: list[int] = []
    seen: set[int] = set()
    since_bucket: int | None = None
    since_id = None if since is None else entry_id(since)
    for raw_id, values in newest_first:
        bucket = _bucket(values, timeframe.seconds)
        if bucket is None:
            continue
        if bucket not in seen:
            seen.add(bucket)
            order.append(bucket)
        if since_id is not None and since_bucket is None and entry_id(raw_id) <= since_id:
            since_bucket = bucket
    if since_id is None:
        back_to_since = 0
    elif since_bucket is None:
        back_to_since = max_candles + 1
    else:
        back_to_since = order.index(since_bucket) + 1
    wanted = min(max(need + 1, back_to_since), max_candles + 1)
    usable = len(order) if at_stream_start else len(order) - 1
    if usable < wanted and not at_stream_start:
        return False, []
    wanted = min(wanted, usable)
    cut = len(newest_first)
    if wanted < len(order):
        first_dropped = order[wanted]
        cut = next(
            i
            for i, (_, values) in enumerate(newest_first)
            if _bucket(values, timeframe.seconds) == first_dropped
        )
    return True, list(reversed(newest_first[:cut]))


@dataclass(frozen=True, slots=True)
class Rewarmed:
    """Candles folded from the stream (the strategy did not run on them)."""

    closed: tuple[Candle, ...] = ()
    partial: Candle | None = None
    last_ms: int | None = None
    ticks: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def closed_after(self, last_ms: int | None, timeframe: Timeframe) -> int:
        """How many closed candles were still open (or not begun) at ``last_ms``."""
        if last_ms is None:
            return len(self.closed)
        step_ms = timeframe.seconds * 1000
        return sum(1 for c in self.closed if _ms(c.start) + step_ms > last_ms)


def rewarm(instrument: str, entries: Sequence[StreamEntry], timeframe: Timeframe) -> Rewarmed:
    """Validate and fold ``entries`` (oldest first) into candles, as the tick path would."""
    good: list[Tick] = []
    rejected: dict[str, int] = {}
    last_time: datetime | None = None
    for _entry, values in entries:
        tick = entry_to_tick(instrument, values)
        reason = UNPARSEABLE if tick is None else validate_tick(tick, last_time)
        if reason is not None:
            rejected[reason] = rejected.get(reason, 0) + 1
            continue
        assert tick is not None
        good.append(tick)
        last_time = tick.time
    folded = fold_ticks(None, good, timeframe)
    return Rewarmed(
        closed=folded.closed,
        partial=folded.partial,
        last_ms=None if last_time is None else _ms(last_time),
        ticks=len(good),
        rejected=rejected,
    )


def _ms(t: datetime) -> int:
    delta = t - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


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


@dataclass(frozen=True, slots=True)
class Position:
    quantity: int
    average_price: Decimal | None
    opened_at: datetime | None = None
    stop_price: Decimal | None = None
    """The price of the protective stop still working for it (``stop_price_for``)."""


@dataclass(frozen=True, slots=True)
class OpenStop:
    """A protective stop order row of the session that is not final."""

    client_order_id: str
    contract: str
    side: Side
    stop_price: Decimal


def stop_price_for(quantity: int, contract: str, stops: Sequence[OpenStop]) -> Decimal | None:
    """The stop price of a rebuilt position: the newest open stop's (``stops`` oldest first),
    when it is on the side that closes ``quantity`` in ``contract``; None when flat or no stop
    protects it. The rebuilt session then watches the stop that rests for it
    (``trading.stops``) and syncs it like any other (``workers.stops.sync``)."""
    if quantity == 0 or not stops:
        return None
    newest = stops[-1]
    closing: Side = "sell" if quantity > 0 else "buy"
    if (newest.contract, newest.side) != (contract, closing):
        return None
    return newest.stop_price


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
    "OpenStop",
    "OrderRecord",
    "Position",
    "RecordedFill",
    "Rewarmed",
    "build_state",
    "history_window",
    "max_signal_seq",
    "progress_after",
    "replay_fills",
    "rewarm",
    "signal_seq_after",
    "stop_price_for",
    "working_copy",
]
