"""Applying broker fills to sessions: idempotent by execution id, under the session's lock.

The broker's fill log (``fills_since``) is read from a per-account cursor kept in the sessions'
Redis. Each fill is applied to its session's state in one fenced write (position, average
price, realized P&L, commissions, the order's working copy, the trade) unless the session has
already seen that execution id; then the fill row is recorded in SQL (unique execution id).

Fills are applied in the order of the broker's log, and the per-account cursor only moves
forward (two deliveries racing never move it back).

A fill whose order the session's state does not hold yet, while the order's SQL row is young,
waits (``RetryLater``) instead of being applied: the tick step that decided the order wrote the
row and queued the send before its own state write, and died (or lost its lease) in between.
The step is re-run from the old state, decides the same order again (same client id) and
records it; only then is the fill applied. Applying it earlier would count the position twice
in the re-run (the filled position AND the order decided again), so the re-run would decide
differently and reuse a client id for a different order. After ``UNRECORDED_FILL_WAIT_S`` the
fill is applied anyway (reconciliation corrects what no re-run recorded).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import redis
from sqlalchemy.engine import Engine

from models.codec import decode_field, trades_key
from models.meta import LAST_FILL_FIELD, PROGRESS_FIELD
from models.progress import TickProgress
from models.state import OpenPosition, OrderStatus, PnlInfo, Trade, WorkingOrder
from trading.exceptions import RetryLater, UnknownSession
from trading.market import epoch_ms
from trading.positions import apply_fill
from trading.rolls import ROLL_ORDER_PREFIX
from trading.stops import after_stop_fill
from workers.brokers.base import AccountManager
from workers.brokers.commands import Fill, QueryBalance
from workers.brokers.paper.model import epoch_ms_ceil
from workers.db.event_rows import record_event
from workers.db.order_rows import get_order_row, record_fill
from workers.dispatch.rolls import send_wake
from workers.risk.after_fill import risk_after_fill
from workers.settings import RiskSettings, StopSettings
from workers.state.store import Lease, StateChanges, StateStore
from workers.stops.rows import has_open_stop_rows
from workers.stops.sync import is_stop_id, sync_stop
from workers.stops.touches import record_unfilled_touch

log = logging.getLogger(__name__)

LOCK_WAIT_S = 5.0
UNRECORDED_FILL_WAIT_S = 120.0
"""How long a fill waits for its session's state to record the order it fills (see above)."""
"""Meta field: the wall-clock time the session last applied a fill (reconciliation's grace)."""

ADVANCE_CURSOR = """
-- KEYS: cursor   ARGV: stream id. Moves the cursor forward only; returns the cursor it holds
-- after (another worker may have moved it further).
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local current = redis.call('GET', KEYS[1])
if current then
  local ms, seq = parts(current)
  local new_ms, new_seq = parts(ARGV[1])
  if new_ms < ms or (new_ms == ms and new_seq <= seq) then return current end
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""


def fills_cursor_key(account: str) -> str:
    return f"tf:fills:{account}:cursor"


def deliver_fills(
    client: redis.Redis,
    store: StateStore,
    engine: Engine,
    broker: AccountManager,
    account: str,
    risk: RiskSettings,
    stops: StopSettings,
    *,
    statuses: dict[str, OrderStatus] | None = None,
) -> int:
    """Apply every fill the broker logged for ``account`` since the cursor (a batch at a time,
    until one is not whole); returns how many.
    ``statuses``, if given, gets the status each fill's order row was left in (by client
    order id)."""
    key = fills_cursor_key(account)
    advance = client.register_script(ADVANCE_CURSOR)
    applied = 0
    raw = client.get(key)
    cursor = raw.decode() if isinstance(raw, bytes) else ""
    while True:
        fills, new_cursor = broker.fills_since(account, cursor)
        if not fills:
            return applied
        for fill in fills:
            if fill.session_id and apply_fill_to_session(
                store, engine, broker, fill, risk, stops, statuses=statuses
            ):
                applied += 1
        held = advance(keys=[key], args=[new_cursor])
        if len(fills) < broker.fills_batch:
            return applied  # every fill there was: asking again would answer none
        cursor = held.decode() if isinstance(held, bytes) else str(held)


def apply_fill_to_session(
    store: StateStore,
    engine: Engine,
    broker: AccountManager,
    fill: Fill,
    risk: RiskSettings,
    stops: StopSettings,
    *,
    statuses: dict[str, OrderStatus] | None = None,
) -> bool:
    """Apply one fill to its session (once); True if this call applied it. The fill of a roll
    order wakes the roll's await step if the roll waits there (``workers.rolls.wake``; by the
    call that applied it). ``statuses`` gets the status the fill left its order row in.

    ``RetryLater`` when the session has not recorded the fill's order yet (see the module).
    """
    stops_seen = True
    try:
        with store.locked(fill.session_id, wait_s=LOCK_WAIT_S) as lease:
            if _already_applied(store.client, fill):
                newly = False
            elif _order_not_recorded_yet(engine, lease, fill):
                raise RetryLater(
                    f"fill {fill.execution_id} waits for session {fill.session_id} "
                    f"to record order {fill.client_order_id}"
                )
            else:
                balance = broker.balance(QueryBalance(fill.account)).cash
                changes, trade = _changes_for(lease.fields, fill, balance)
                changes.update(
                    _risk_changes(store, engine, lease, fill, changes, trade, balance, risk)
                )
                settled = _stop_settled(engine, lease, fill) or _touch_before_fill(
                    store.client, engine, lease, fill
                )
                meta = {LAST_FILL_FIELD: datetime.now(UTC).isoformat(), **settled}
                stops_seen = _stops_in_state(lease, changes, fill)
                changed = StateChanges.of(changes, trades=[trade], meta=meta)
                store.write(lease, changed, release=True)
                newly = True
    except UnknownSession:
        log.warning("fill %s is for unknown session %s", fill.execution_id, fill.session_id)
        return False
    status = record_fill(
        engine,
        fill.execution_id,
        fill.client_order_id,
        abs(fill.quantity),
        fill.price,
        fill.commission,
        fill.time,
        fill.broker_order_id,
        metrics=store.client,
    )
    if statuses is not None and status is not None:
        statuses[fill.client_order_id] = status
    _protect(store, engine, broker, fill, stops, stops_seen)
    if newly and fill.client_order_id.startswith(ROLL_ORDER_PREFIX):
        send_wake(engine, fill.client_order_id)
    return newly


def _stop_settled(engine: Engine, lease: Lease, fill: Fill) -> dict[str, str]:
    """A protective stop's fill settles the touch the tick step took as closed when it saw
    it (``trading.stops``): the new ``_progress``, if it changes."""
    raw = lease.fields.get(PROGRESS_FIELD)
    if not is_stop_id(fill.client_order_id) or not raw:
        return {}
    progress = TickProgress.from_json(raw)
    if not progress.stops_out:
        return {}
    row = get_order_row(engine, fill.client_order_id)
    price = None if row is None or row.stop_price is None else Decimal(row.stop_price)
    settled = after_stop_fill(progress.stops_out, fill.quantity, price)
    if settled == progress.stops_out:
        return {}
    return {PROGRESS_FIELD: replace(progress, stops_out=settled).to_json()}


def _touch_before_fill(
    client: redis.Redis, engine: Engine, lease: Lease, fill: Fill
) -> dict[str, str]:
    """An entry's fill at a broker later than the session took it (a live broker fills at
    its own market, after the order reached it): a touch of the entry's stop the session saw
    before that fill did not happen at the broker (the stop rests from the entry's fill
    there), so it is dropped; entries decided on it are cancelled unsent
    (``workers.stops.touches.unfilled_touch_key``). The new ``_progress``, if it changes."""
    raw = lease.fields.get(PROGRESS_FIELD)
    if not raw or is_stop_id(fill.client_order_id):
        return {}
    progress = TickProgress.from_json(raw)
    if not progress.stops_out:
        return {}
    orders: Mapping[str, WorkingOrder] = lease.value("orders")
    entry = orders.get(fill.client_order_id)
    if entry is None or entry.intent != "entry" or entry.stop_price is None:
        return {}
    direction, price = (1 if fill.quantity > 0 else -1), entry.stop_price
    filled_ms = epoch_ms(fill.time)
    early = [
        out
        for out in progress.stops_out
        if (out.direction, out.price) == (direction, price) and out.at_ms < filled_ms
    ]
    if not early:
        return {}
    kept = tuple(out for out in progress.stops_out if out not in early)
    newest = max(out.at_ms for out in early)
    record_unfilled_touch(client, fill.session_id, newest, progress.last_ms)
    message = (
        f"protective stop {price} was touched in the data before entry {fill.client_order_id} "
        f"filled at the broker ({fill.time.isoformat()}): the position is held"
    )
    log.warning("session %s: %s", fill.session_id, message)
    details = {"client_order_id": fill.client_order_id, "touched_ms": newest}
    record_event(engine, fill.session_id, "risk", "warning", message, details)
    return {PROGRESS_FIELD: replace(progress, stops_out=kept).to_json()}


def _stops_in_state(lease: Lease, changes: Mapping[str, object], fill: Fill) -> bool:
    """Whether the session's state, before or after this fill, names a protective stop: the
    fill is a stop's, or the position or a working order holds a stop price."""
    if is_stop_id(fill.client_order_id):
        return True
    before: OpenPosition | None = lease.value("open_position")
    after = changes["open_position"]
    orders: Mapping[str, WorkingOrder] = lease.value("orders")
    return (
        (before is not None and before.stop_price is not None)
        or (isinstance(after, OpenPosition) and after.stop_price is not None)
        or any(order.stop_price is not None for order in orders.values())
    )


def _protect(
    store: StateStore,
    engine: Engine,
    broker: AccountManager,
    fill: Fill,
    stops: StopSettings,
    stops_seen: bool,
) -> None:
    """After every fill (also one applied before: a crash may have come in between), the
    broker holds the stop the position needs (``workers.stops.sync``). A failure is left to
    the next fill and to order reconciliation: the fill itself is applied.

    A session with no stop in its state (``stops_seen`` False) and no open stop row has none
    to place or cancel: the sync (its lock and its reads) is skipped."""
    if not stops.protective:
        return
    if not stops_seen and not has_open_stop_rows(engine, fill.session_id):
        return
    try:
        sync_stop(store, engine, broker, fill.session_id, fill.account, fill.time)
    except (RetryLater, UnknownSession) as exc:
        log.warning("session %s: protective stop not synced: %s", fill.session_id, exc)


def _risk_changes(
    store: StateStore,
    engine: Engine,
    lease: Lease,
    fill: Fill,
    changes: Mapping[str, object],
    trade: Trade,
    balance: Decimal,
    risk: RiskSettings,
) -> dict[str, object]:
    """The session's heat fields after this fill (``workers.risk.after_fill``)."""
    position = changes["open_position"]
    details = lease.value("contract_details")
    assert isinstance(position, OpenPosition)
    realized = trade.realized_pnl - trade.commission
    return risk_after_fill(
        store.client,
        engine,
        fill.account,
        fill.session_id,
        position,
        details,
        fill.price,
        realized,
        fill.time.date().isoformat(),
        balance,
        risk,
    )


def _already_applied(client: redis.Redis, fill: Fill) -> bool:
    """Whether the session's trades already hold this execution id (fills are idempotent)."""
    raws: list[bytes] = client.lrange(trades_key(fill.session_id), 0, -1)  # type: ignore[assignment]
    needle = json.dumps({"execution_id": fill.execution_id}, separators=(",", ":"))[1:-1].encode()
    return any(needle in raw and _execution_id(raw) == fill.execution_id for raw in raws)


def _order_not_recorded_yet(engine: Engine, lease: Lease, fill: Fill) -> bool:
    """Whether the session's state lacks the order of ``fill`` while its SQL row is young."""
    orders: dict[str, WorkingOrder] = lease.value("orders")
    if is_stop_id(fill.client_order_id):
        return _touch_not_seen_yet(engine, lease, fill)
    if fill.client_order_id in orders:
        return False
    row = get_order_row(engine, fill.client_order_id)
    if row is None or row.session_id != fill.session_id:
        return False
    age = datetime.now(UTC) - row.created_at
    if age < timedelta(seconds=UNRECORDED_FILL_WAIT_S):
        return True
    log.warning(
        "fill %s: session %s never recorded order %s; applied anyway",
        fill.execution_id,
        fill.session_id,
        fill.client_order_id,
    )
    return False


def _touch_not_seen_yet(engine: Engine, lease: Lease, fill: Fill) -> bool:
    """Whether a protective stop filled on a tick the session's step has not processed yet:
    it waits, like an order not recorded yet, so that the step sees the touch first
    (``trading.stops``) and the same replay gives the same events and decisions;
    applied anyway once the stop's row is ``UNRECORDED_FILL_WAIT_S`` old."""
    raw = lease.fields.get(PROGRESS_FIELD)
    last_ms = TickProgress.from_json(raw).last_ms if raw else None
    if last_ms is not None and last_ms >= epoch_ms_ceil(fill.time):
        return False
    row = get_order_row(engine, fill.client_order_id)
    if row is None:
        return False
    return datetime.now(UTC) - row.created_at < timedelta(seconds=UNRECORDED_FILL_WAIT_S)


def _execution_id(raw: bytes) -> str:
    return str(json.loads(raw).get("execution_id"))


def _changes_for(
    fields: Mapping[str, str], fill: Fill, balance: Decimal
) -> tuple[dict[str, object], Trade]:
    position: OpenPosition | None = decode_field("open_position", fields["open_position"])
    details = decode_field("contract_details", fields["contract_details"])
    pnl: PnlInfo = decode_field("account_pnl_info", fields["account_pnl_info"])
    orders: dict[str, WorkingOrder] = decode_field("orders", fields["orders"])
    held = position if position is not None else OpenPosition(contract=fill.contract)
    if held.contract != fill.contract and held.quantity == 0:
        held = OpenPosition(contract=fill.contract)
    step = apply_fill(
        held.quantity, held.average_price, fill.quantity, fill.price, details.multiplier
    )
    new_position = replace(
        held,
        quantity=step.quantity,
        average_price=step.average_price,
        opened_at=None if step.quantity == 0 else (held.opened_at or fill.time),
        stop_price=None if step.quantity == 0 else held.stop_price,
    )
    order = orders.get(fill.client_order_id)
    if order is not None:
        filled = order.filled_quantity + abs(fill.quantity)
        if filled >= order.quantity:
            orders = {k: v for k, v in orders.items() if k != fill.client_order_id}
            if order.stop_price is not None and step.quantity != 0:
                new_position = replace(new_position, stop_price=order.stop_price)
        else:
            orders = {
                **orders,
                fill.client_order_id: replace(
                    order, filled_quantity=filled, status="partially_filled"
                ),
            }
    new_pnl = replace(
        pnl,
        realized=pnl.realized + step.realized,
        commissions=pnl.commissions + fill.commission,
        unrealized=Decimal(0) if step.quantity == 0 else pnl.unrealized,
        as_of=fill.time,
    )
    trade = Trade(
        execution_id=fill.execution_id,
        client_order_id=fill.client_order_id,
        contract=fill.contract,
        quantity=fill.quantity,
        price=fill.price,
        commission=fill.commission,
        time=fill.time,
        realized_pnl=step.realized,
    )
    changes: dict[str, object] = {
        "open_position": new_position,
        "orders": orders,
        "account_pnl_info": new_pnl,
        "account_balance": balance,
    }
    return changes, trade
