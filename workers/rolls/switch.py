"""The last two steps of a roll: switch the session's contract, then end the roll.

Switch, in ONE fenced write under the session's lock (all or nothing): ``session.contract``,
``contract_details`` (the new symbol's spec and expiry), ``candle_key`` (so the tick path reads
the new contract's stream), ``market_data_source.args.instrument``, the ``_cursor`` at the new
stream's current end (ticks published before the switch are not the session's), the candle
history and the partial candle back-adjusted by the roll spread (``trading.rolls``), the
position's protective stop moved by the same spread, and the strategy's state in the new
contract's terms (``call_roll_state``: a stop it holds moves by the spread too; a strategy that
fails there stops trading, its state kept, with an error event). The write is done once: a
re-run finds the session already on the new contract and only repeats the idempotent rest —
the subscription moved to the new stream, the SQL session row's contract.

The spread is the new contract's fill price minus the old one's. A flat session has no fills:
its spread is measured between the first prints of the two contracts at or after the roll's
decision time (where market orders decided then would have filled); until both exist the switch
waits (retried).
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session as DbSession

from models.codec import (
    candles_key,
    decode_candle,
    encode_candle,
    encode_fields,
    fence_key,
    lock_key,
    state_key,
    trades_key,
)
from models.meta import CURSOR_FIELD, PROGRESS_FIELD, ROLL_FIELD
from models.state import (
    CollaboratorRef,
    ContractDetails,
    OpenPosition,
    SessionInfo,
    StrategyRef,
)
from models.tables import RollRow, TradingSessionRow
from trading.calendar import last_trade_date
from trading.contracts import spec_for
from trading.exceptions import BadInput, RetryLater, StaleFence, StrategyError, UnknownSession
from trading.market import Candle
from trading.rolls import adjust_candle, adjust_price, back_adjust, roll_spread
from trading.strategies import call_roll_state, get_strategy
from workers.calendars.exchange_holidays import exchange_holidays
from workers.orders.fills import LOCK_WAIT_S
from workers.rolls import marks
from workers.rolls.marks import RollMeta, meta_of
from workers.runtime import Runtime
from workers.state import scripts as store_scripts
from workers.state.store import Lease
from workers.ticks.keys import READY_KEY, stream_key
from workers.ticks.snapshots import StrategySnapshot, save_snapshots
from workers.ticks.step import progress_of
from workers.ticks.subscriptions import move_subscription, stream_end

_WRITTEN, _UNKNOWN = 1, -1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def switch_contract(rt: Runtime, row: RollRow, session: TradingSessionRow) -> None:
    """Move the session to ``row.to_contract`` (see the module); idempotent."""
    spread = _spread(rt, row)
    with rt.store.locked(row.session_id, wait_s=LOCK_WAIT_S) as lease:
        info: SessionInfo = lease.value("session")
        switched = info.contract != row.to_contract
        if switched:
            cursor, failure, snapshot = _write_switch(rt, lease, row, spread)
        else:
            strategy: StrategyRef = lease.value("strategy")
            snapshot = _snapshot(lease, strategy.state, lease.fields.get(CURSOR_FIELD, "0-0"))
    save_snapshots(rt.engine, [snapshot])
    move_subscription(rt.redis, row.session_id, row.from_contract, row.to_contract)
    _switch_session_row(rt, session.id, row.to_contract)
    if not switched:
        return
    if stream_end(rt.redis, row.to_contract) != cursor:
        rt.redis.zadd(READY_KEY, {row.session_id: time.time_ns() // 1_000_000}, nx=True)
        rt.publisher.wake()
    marks.event(
        rt,
        row.session_id,
        "info",
        f"roll {row.id}: switched {row.from_contract} -> {row.to_contract}, candles "
        f"back-adjusted by {spread}",
        {"roll_id": row.id, "spread": str(spread)},
    )
    if failure is not None:
        marks.event(
            rt,
            row.session_id,
            "error",
            f"roll {row.id}: {failure}; the session stops trading (its strategy state is as "
            "it was before the roll)",
            {"roll_id": row.id, "spread": str(spread)},
        )


def _spread(rt: Runtime, row: RollRow) -> Decimal:
    if row.quantity != 0:
        if row.close_fill_price is None or row.open_fill_price is None:
            raise BadInput(f"roll {row.id} has no fill prices; it cannot switch yet")
        return roll_spread(row.close_fill_price, row.open_fill_price)
    old = _first_price_from(rt, row.from_contract, row.decided_at)
    new = _first_price_from(rt, row.to_contract, row.decided_at)
    if old is None or new is None:
        raise RetryLater(
            f"roll {row.id}: no print of {row.from_contract} and {row.to_contract} since the "
            "decision yet, to measure the spread"
        )
    return roll_spread(old, new)


def _first_price_from(rt: Runtime, instrument: str, since: datetime) -> Decimal | None:
    """The price of the first print of ``instrument`` at or after ``since`` (stream ids are the
    data time in ms, never going back), like the fill of a market order decided then."""
    start = f"{-((_EPOCH - since) // _MS)}-0"
    first: Any = rt.redis.xrange(stream_key(instrument), min=start, max="+", count=1)
    if not first:
        return None
    raw = first[0][1].get(b"p")
    return None if raw is None else Decimal(raw.decode())


def _write_switch(
    rt: Runtime, lease: Lease, row: RollRow, spread: Decimal
) -> tuple[str, str | None, StrategySnapshot]:
    """The switch's one write; returns the new cursor, why the strategy stopped trading (None
    when its state moved to the new contract) and the strategy snapshot of what it wrote."""
    sid = row.session_id
    to = row.to_contract
    info: SessionInfo = lease.value("session")
    details: ContractDetails = lease.value("contract_details")
    source: CollaboratorRef = lease.value("market_data_source")
    partial: Candle | None = lease.value("latest_partial_candle")
    position: OpenPosition | None = lease.value("open_position")
    meta = meta_of(lease)
    timeframe = str(lease.value("candle_key")).split(":", 1)[1]
    spec = spec_for(to)
    values: dict[str, Any] = {
        "session": replace(info, contract=to),
        "contract_details": ContractDetails(
            symbol=to,
            product=details.product,
            multiplier=spec.multiplier,
            tick_size=spec.tick_size,
            expiry=_expiry(to),
        ),
        "candle_key": f"{to}:{timeframe}",
        "market_data_source": replace(source, args={**source.args, "instrument": to}),
        "latest_partial_candle": None if partial is None else adjust_candle(partial, spread),
        "open_position": _moved_position(position, to, meta, spread),
    }
    strategy: StrategyRef = lease.value("strategy")
    rolled = strategy.state
    try:
        rolled = call_roll_state(
            get_strategy(strategy.module), strategy.state, strategy.args, spread
        )
        values["strategy"] = replace(strategy, state=rolled)
        failure = None
    except StrategyError as exc:
        values["trading"] = False
        failure = str(exc)
    fields = encode_fields(values, values.keys())
    cursor = stream_end(rt.redis, to)
    fields[CURSOR_FIELD] = cursor
    fields[ROLL_FIELD] = replace(meta, step="switch").to_json()
    raw_candles: list[bytes] = rt.redis.lrange(candles_key(sid), 0, -1)  # type: ignore[assignment]
    candles = back_adjust([decode_candle(raw) for raw in raw_candles], spread)
    trades: list[bytes] = rt.redis.lrange(trades_key(sid), 0, -1)  # type: ignore[assignment]
    _replace_all(rt, lease, fields, [encode_candle(c) for c in candles], trades)
    return cursor, failure, _snapshot(lease, rolled, cursor)


def _snapshot(lease: Lease, state: dict[str, Any], cursor: str) -> StrategySnapshot:
    """The strategy snapshot of the switched session (recovery rebuilds its candles from the
    new contract's stream, so it must find the strategy state in the new contract's terms)."""
    progress = progress_of(lease.session_id, lease.fields.get(PROGRESS_FIELD))
    return StrategySnapshot.of_progress(
        lease.session_id, dict(state), progress, cursor, datetime.now(UTC)
    )


def _moved_position(
    position: OpenPosition | None, to: str, meta: RollMeta, spread: Decimal
) -> OpenPosition:
    """The position in the new contract; its stop is the old stop moved by the spread."""
    if position is None or position.quantity == 0:
        return OpenPosition(contract=to)
    if position.contract != to:
        raise BadInput(f"the session holds {position.quantity} {position.contract}, not {to}")
    if position.stop_price is None and meta.stop_price is not None:
        return replace(position, stop_price=adjust_price(meta.stop_price, spread))
    return position


def _expiry(contract: str) -> Any:
    try:
        return last_trade_date(contract, exchange_holidays())
    except BadInput:
        return None


def _replace_all(
    rt: Runtime,
    lease: Lease,
    fields: dict[str, str],
    candles: list[str],
    trades: list[bytes],
) -> None:
    """One fenced write of ``fields`` that also replaces both lists (the store's own write
    script with its replace flag; the trades go back as they were)."""
    sid = lease.session_id
    keys = [state_key(sid), candles_key(sid), trades_key(sid), fence_key(sid), lock_key(sid)]
    args: list[Any] = [
        lease.token,
        lease.fence,
        "0",
        "1",
        rt.store.max_candles,
        rt.store.max_trades,
        len(fields),
    ]
    for name, value in fields.items():
        args += [name, value]
    args += [len(candles), *candles, len(trades), *trades]
    status = int(rt.redis.register_script(store_scripts.WRITE)(keys=keys, args=args))
    if status == _UNKNOWN:
        raise UnknownSession(sid)
    if status != _WRITTEN:
        raise StaleFence(f"session {sid}: fence {lease.fence} is stale; the switch was not written")


def _switch_session_row(rt: Runtime, session_id: str, contract: str) -> None:
    with DbSession(rt.engine) as db, db.begin():
        row = db.get(TradingSessionRow, session_id)
        if row is None:
            raise UnknownSession(session_id)
        if row.contract != contract:
            row.contract = contract
            row.market_data_args = {**row.market_data_args, "instrument": contract}


def end_roll(rt: Runtime, row: RollRow) -> None:
    """``rolling`` false, the roll's fields cleared; trading given back if the roll took it."""
    with rt.store.locked(row.session_id, wait_s=LOCK_WAIT_S) as lease:
        meta = meta_of(lease)
        if meta.roll_id != row.id and not lease.value("rolling"):
            return
        values: dict[str, Any] = {
            "rolling": False,
            "rolling_close_order_id": None,
            "rolling_close_qty": None,
        }
        if meta.roll_id == row.id and meta.stopped_trading:
            values["trading"] = True
        marks.write(rt, lease, values, RollMeta())
    marks.event(
        rt,
        row.session_id,
        "info",
        f"roll {row.id} done: {row.quantity} {row.from_contract} -> {row.to_contract}",
        {
            "roll_id": row.id,
            "quantity": row.quantity,
            "close_fill_price": None if row.close_fill_price is None else str(row.close_fill_price),
            "open_fill_price": None if row.open_fill_price is None else str(row.open_fill_price),
        },
    )
