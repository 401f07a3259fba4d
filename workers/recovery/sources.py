"""What a recovery reads: the session's SQL rows, the broker, and the instrument's tick stream.

The broker is read last and as one consistent picture: its fill log to the end, then the
position and balance, then the log again; a fill booked in between means "read again" (a
position is never paired with a log end that misses one of its fills). A broker that does not
answer raises: recovery is retried later and never assumes a flat position.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models.state import CollaboratorRef, OrderTemplate, SessionInfo, WorkingOrder
from models.tables import (
    UNFINISHED_ROLL_STATUSES,
    FillRow,
    OrderRow,
    RollRow,
    TradingSessionRow,
)
from trading.contracts import spec_for_product
from trading.exceptions import RetryLater, ServiceUnavailable
from trading.market import EPOCH, StreamEntry, Tick, entry_to_tick
from trading.reconcile import OPEN_ORDER_STATUSES
from trading.recovery import OpenStop, history_window
from trading.strategies import get_strategy, prepare_strategy
from trading.timeframes import Timeframe
from workers.brokers.base import FILLS_START, AccountManager
from workers.brokers.commands import (
    BrokerOrder,
    Fill,
    QueryBalance,
    QueryOrder,
    QueryPositions,
)
from workers.brokers.paper.model import MarketBound, epoch_ms_ceil
from workers.db.order_rows import insert_fill_if_absent, update_order_row
from workers.feeds.base import HistorySource
from workers.feeds.history import bar_entries, minute_after, minute_of, minutes_for
from workers.feeds.registry import history_source
from workers.orders.send import BROKER_TO_LOCAL
from workers.recovery.rebuild import Definition, OrderRecord, RecordedFill
from workers.sessions.warmup import DATA_TIME_SOURCES
from workers.settings import Settings
from workers.stops.horizon import until_replaced
from workers.stops.sync import is_stop_id, open_stop_rows
from workers.ticks.keys import stream_key

log = logging.getLogger(__name__)

HISTORY_CHUNK = 5_000
BROKER_READ_TRIES = 5


# --------------------------------------------------------------------------- SQL


def definition_of(row: TradingSessionRow) -> Definition:
    """The session's configuration as stored when it was created."""
    prepared = prepare_strategy(get_strategy(row.strategy_name), dict(row.strategy_args))
    template = dict(row.order_template)
    return Definition(
        session=SessionInfo(
            id=row.id,
            name=row.name,
            account=row.account,
            product=row.product,
            contract=row.contract,
            timeframe=row.timeframe,
            created_at=row.created_at,
        ),
        strategy=row.strategy_name,
        strategy_args=prepared.args,
        strategy_initial_state=prepared.state,
        warmup_periods=prepared.warmup_periods,
        market_data_source=CollaboratorRef(row.market_data_source, dict(row.market_data_args)),
        account_manager=CollaboratorRef(row.account_manager, dict(row.account_manager_args)),
        order_template=OrderTemplate(
            order_type=template.get("order_type", "market"),
            quantity=int(template.get("quantity", 1)),
            time_in_force=template.get("time_in_force", "day"),
        ),
        spec=spec_for_product(row.product),
    )


def current_contract(engine: Engine, row: TradingSessionRow) -> str:
    """The contract the session trades now: its last finished roll's, else its own."""
    query = (
        select(RollRow.to_contract)
        .where(RollRow.session_id == row.id, RollRow.status == "done")
        .order_by(RollRow.id.desc())
        .limit(1)
    )
    with Session(engine) as db:
        rolled = db.scalar(query)
    return rolled or row.contract


def roll_unfinished(engine: Engine, session_id: str) -> bool:
    """Whether a roll of the session is under way (the strategy must not run meanwhile)."""
    query = select(RollRow.id).where(
        RollRow.session_id == session_id, RollRow.status.in_(UNFINISHED_ROLL_STATUSES)
    )
    with Session(engine) as db:
        return db.scalar(query.limit(1)) is not None


def sole_owner(engine: Engine, row: TradingSessionRow, contract: str) -> bool:
    """Whether no other active session trades ``contract`` on the same account (the broker
    nets positions per account and contract)."""
    query = select(TradingSessionRow.id).where(
        TradingSessionRow.account == row.account,
        TradingSessionRow.status == "active",
        TradingSessionRow.contract == contract,
        TradingSessionRow.id != row.id,
    )
    with Session(engine) as db:
        return db.scalar(query.limit(1)) is None


def client_order_ids(engine: Engine, session_id: str) -> list[str]:
    with Session(engine) as db:
        query = select(OrderRow.client_order_id).where(OrderRow.session_id == session_id)
        return list(db.scalars(query).all())


def open_order_records(engine: Engine, session_id: str) -> list[OrderRecord]:
    """The session's order rows that are not final, oldest first; protective stops are left
    out (they are not working copies: a rebuilt session must not count one as pending)."""
    query = (
        select(OrderRow)
        .where(OrderRow.session_id == session_id, OrderRow.status.in_(OPEN_ORDER_STATUSES))
        .order_by(OrderRow.id)
    )
    with Session(engine) as db:
        return [
            OrderRecord(
                client_order_id=row.client_order_id,
                contract=row.contract,
                side=row.side,
                quantity=row.quantity,
                order_type=row.order_type,
                intent=row.intent,
                status=row.status,
                created_at=row.decided_at or row.created_at,
                limit_price=row.limit_price,
                stop_price=row.stop_price,
                broker_order_id=row.broker_order_id,
            )
            for row in db.scalars(query).all()
            if not is_stop_id(row.client_order_id)
        ]


def recorded_fills(engine: Engine, session_id: str) -> list[RecordedFill]:
    """Every recorded fill of the session, oldest first."""
    with Session(engine) as db:
        rows = db.execute(
            select(FillRow, OrderRow.client_order_id, OrderRow.contract, OrderRow.side)
            .join(OrderRow, FillRow.order_id == OrderRow.id)
            .where(OrderRow.session_id == session_id)
            .order_by(FillRow.filled_at, FillRow.id)
        ).all()
    return [
        RecordedFill(
            execution_id=fill.execution_id,
            client_order_id=coid,
            contract=contract,
            quantity=fill.quantity if side == "buy" else -fill.quantity,
            price=fill.price,
            commission=fill.commission,
            time=fill.filled_at,
        )
        for fill, coid, contract, side in rows
    ]


def record_broker_fills(engine: Engine, metrics: redis.Redis, fills: Sequence[Fill]) -> int:
    """Record the session's fills the broker logged and SQL lacks (the session had no state
    when they were delivered); returns how many were new (counted on ``metrics``)."""
    added = 0
    for fill in fills:
        if insert_fill_if_absent(
            engine,
            fill.execution_id,
            fill.client_order_id,
            abs(fill.quantity),
            fill.price,
            fill.commission,
            fill.time,
            metrics=metrics,
        ):
            added += 1
    return added


def close_final_orders(
    engine: Engine,
    metrics: redis.Redis,
    records: Sequence[OrderRecord],
    broker_orders: dict[str, BrokerOrder | None],
) -> list[str]:
    """Order rows the broker holds as final take that status; returns their client ids."""
    closed: list[str] = []
    for record in records:
        answer = broker_orders.get(record.client_order_id)
        if answer is None or answer.status in ("working", "unknown"):
            continue
        status = BROKER_TO_LOCAL[answer.status]
        broker_id = answer.broker_order_id or None
        update_order_row(engine, record.client_order_id, status, broker_id, metrics=metrics)
        closed.append(record.client_order_id)
    return closed


def open_stops(
    engine: Engine, session_id: str, pending: Mapping[str, WorkingOrder]
) -> list[OpenStop]:
    """The session's protective stops that are not final, oldest first, but those attached to
    an entry still ``pending`` (``workers.stops.sync.open_stop_rows``)."""
    return [
        OpenStop(row.client_order_id, row.contract, row.side, Decimal(str(row.stop_price)))
        for row in open_stop_rows(engine, session_id, pending=pending)
        if row.stop_price is not None
    ]


def settle_stops(
    broker: AccountManager,
    engine: Engine,
    metrics: redis.Redis,
    account: str,
    session_id: str,
    through: str,
    records: Sequence[OrderRecord],
) -> list[str]:
    """Let the broker work the session's open protective stops on the stream entries up to
    ``through`` (the cursor the rebuilt session starts at), then give each stop row the
    broker's status if final; returns the client ids of the rows closed.

    The rebuilt session never processes the ticks it met without state (they only re-warm its
    candles), and a stop is worked only on the entries its session has processed: worked here,
    before the broker's position is read, a stop touched meanwhile has filled and the rebuilt
    position holds its fill; a stop still working goes on from ``through``, on the ticks the
    rebuilt session watches it on (``trading.stops``). So the rebuilt session never
    learns of such a fill at a wall-clock moment of its own, nor decides as if that stop still
    rested. A stop is worked no later than the decision of a later stop of the session or of
    an exit still open (``workers.stops.horizon``); a broker that works its orders by
    itself (no ``match_order``) is only asked."""
    match_order = getattr(broker, "match_order", None)
    exits = [epoch_ms_ceil(r.created_at) for r in records if r.intent == "exit"]
    closed: list[str] = []
    for row in open_stop_rows(engine, session_id):
        coid = row.client_order_id
        if callable(match_order) and row.status != "new":
            bound = MarketBound(min(exits, default=None), through)
            match_order(account, coid, until_replaced(engine, bound, row))
        answer = broker.order(QueryOrder(account, coid))
        if answer is None or answer.status in ("working", "unknown"):
            continue
        update_order_row(
            engine,
            coid,
            BROKER_TO_LOCAL[answer.status],
            answer.broker_order_id or None,
            metrics=metrics,
        )
        closed.append(coid)
    return closed


# --------------------------------------------------------------------------- broker


@dataclass(frozen=True, slots=True)
class BrokerView:
    """The broker's truth about one session, read as one consistent picture."""

    quantity: int
    average_price: Decimal | None
    balance: Decimal
    log_end: str
    session_fills: tuple[Fill, ...]
    """The session's fills in the account's log, oldest first."""
    orders: dict[str, BrokerOrder | None]
    """The broker's answer for each of the session's open order rows (None: unknown there)."""


def read_log(broker: AccountManager, account: str, cursor: str) -> tuple[list[Fill], str]:
    fills: list[Fill] = []
    while True:
        batch, after = broker.fills_since(account, cursor)
        if not batch:
            return fills, cursor
        fills.extend(batch)
        cursor = after


def read_broker(
    broker: AccountManager,
    account: str,
    contract: str,
    session_id: str,
    open_ids: Sequence[str],
) -> BrokerView:
    """Position, average price, balance, fill log and open orders of the session at the
    broker; ``RetryLater`` if fills keep arriving while it is read. Broker errors propagate."""
    fills, end = read_log(broker, account, FILLS_START)
    for _ in range(BROKER_READ_TRIES):
        orders = {coid: broker.order(QueryOrder(account, coid)) for coid in open_ids}
        quantity = broker.positions(QueryPositions(account)).get(contract, 0)
        average: Decimal | None = None
        averages = getattr(broker, "average_prices", None)
        if callable(averages) and quantity != 0:
            average = averages(QueryPositions(account)).get(contract)
        balance = broker.balance(QueryBalance(account)).cash
        late, late_end = read_log(broker, account, end)
        if not late:
            mine = tuple(f for f in fills if f.session_id == session_id)
            return BrokerView(quantity, average, balance, end, mine, orders)
        fills.extend(late)
        end = late_end
    raise RetryLater(f"fills keep arriving on account {account}; recovery retried later")


# --------------------------------------------------------------------------- the tick stream


def stream_end(client: redis.Redis, instrument: str) -> str:
    """The id of the instrument stream's last entry ("0-0" when it has none)."""
    last = cast(list[Any], client.xrevrange(stream_key(instrument), count=1))
    if not last:
        return "0-0"
    raw = last[0][0]
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def read_history(
    client: redis.Redis,
    instrument: str,
    end: str,
    timeframe: Timeframe,
    need: int,
    since: str | None,
    max_candles: int,
) -> list[StreamEntry]:
    """The entries up to ``end`` to re-warm the candles from, oldest first (see
    ``trading.recovery.history_window``): read back from ``end`` in chunks until far enough."""
    if end == "0-0":
        return []
    key = stream_key(instrument)
    newest_first: list[StreamEntry] = []
    upper = end
    while True:
        chunk = cast(list[Any], client.xrevrange(key, max=upper, min="-", count=HISTORY_CHUNK))
        at_start = len(chunk) < HISTORY_CHUNK
        newest_first.extend((entry, values) for entry, values in chunk)
        done, entries = history_window(newest_first, timeframe, need, since, max_candles, at_start)
        if done:
            return entries
        last = chunk[-1][0]
        upper = "(" + (last.decode() if isinstance(last, bytes) else str(last))


def top_up_history(
    settings: Settings,
    source: CollaboratorRef,
    instrument: str,
    timeframe: Timeframe,
    need: int,
    entries: list[StreamEntry],
    snapshot_last_ms: int | None,
) -> list[StreamEntry]:
    """``entries`` with the source's history before them when they hold fewer than ``need``
    candles (the stream was lost with the sessions' Redis, or trimmed): the 1-minute bars
    before the minute of the first entry, as the entries the feed would have published
    (``workers.feeds.history``). With no entry left, the history ends with the minute of the
    session's last snapshot (its last tick's bar); a live source without one ends now. A
    source without history, or a replay with no snapshot (its clock is its data), leaves
    ``entries`` as they are."""
    history = history_source(source.module, settings)
    if history is None:
        return entries
    first = next((tick for tick in map(_entry_tick(instrument), entries) if tick), None)
    if first is not None:
        until = minute_of(first.time)
    elif snapshot_last_ms is not None:
        until = minute_after(EPOCH + timedelta(milliseconds=snapshot_last_ms))
    elif source.module in DATA_TIME_SOURCES:
        return entries
    else:
        until = minute_of(datetime.now(UTC))
    return _bars_before(history, instrument, until, minutes_for(need, timeframe)) + entries


def history_before(
    settings: Settings,
    source: CollaboratorRef,
    instrument: str,
    timeframe: Timeframe,
    need: int,
    until: datetime,
) -> list[StreamEntry]:
    """The source's 1-minute bars before ``until`` (the start of a snapshot's candle in
    progress) as the entries the feed would have published, enough for ``need`` whole
    candles; none from a source without history (the session warms up from the stream)."""
    history = history_source(source.module, settings)
    if history is None:
        return []
    return _bars_before(history, instrument, until, minutes_for(need + 1, timeframe))


def _bars_before(
    history: HistorySource, instrument: str, until: datetime, minutes: int
) -> list[StreamEntry]:
    try:
        bars = history.history(instrument, until, minutes)
    except ServiceUnavailable as exc:
        log.warning(
            "%s: no history before %s (%s); warming up from the stream", instrument, until, exc
        )
        return []
    return bar_entries([bar for bar in bars if bar.start < until], instrument)


def _entry_tick(instrument: str) -> Callable[[StreamEntry], Tick | None]:
    return lambda entry: entry_to_tick(instrument, entry[1])
