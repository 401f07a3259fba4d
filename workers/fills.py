"""Applying broker fills to sessions: idempotent by execution id, under the session's lock.

The broker's fill log (``fills_since``) is read from a per-account cursor kept in the sessions'
Redis. Each fill is applied to its session's state in one fenced write (position, average
price, realized P&L, commissions, the order's working copy, the trade) unless the session has
already seen that execution id; then the fill row is recorded in SQL (unique execution id).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal

import redis
from sqlalchemy.engine import Engine

from models.codec import decode_field, trades_key
from models.state import OpenPosition, PnlInfo, Trade, WorkingOrder
from trading.exceptions import UnknownSession
from trading.positions import apply_fill
from workers.brokers.base import AccountManager
from workers.brokers.commands import Fill, QueryBalance
from workers.order_records import insert_fill_if_absent, update_order_row
from workers.state.store import StateChanges, StateStore

log = logging.getLogger(__name__)

LOCK_WAIT_S = 5.0


def fills_cursor_key(account: str) -> str:
    return f"tf:fills:{account}:cursor"


def deliver_fills(
    client: redis.Redis, store: StateStore, engine: Engine, broker: AccountManager, account: str
) -> int:
    """Apply every fill the broker logged for ``account`` since the cursor; returns how many."""
    key = fills_cursor_key(account)
    applied = 0
    while True:
        raw = client.get(key)
        cursor = raw.decode() if isinstance(raw, bytes) else ""
        fills, new_cursor = broker.fills_since(account, cursor)
        if not fills:
            return applied
        for fill in fills:
            if fill.session_id and apply_fill_to_session(store, engine, broker, fill):
                applied += 1
        client.set(key, new_cursor)


def apply_fill_to_session(
    store: StateStore, engine: Engine, broker: AccountManager, fill: Fill
) -> bool:
    """Apply one fill to its session (once); True if this call applied it."""
    try:
        with store.locked(fill.session_id, wait_s=LOCK_WAIT_S) as lease:
            if _already_applied(store.client, fill):
                newly = False
            else:
                balance = broker.balance(QueryBalance(fill.account)).cash
                changes, trade = _changes_for(lease.fields, fill, balance)
                store.write(lease, StateChanges.of(changes, trades=[trade]))
                newly = True
    except UnknownSession:
        log.warning("fill %s is for unknown session %s", fill.execution_id, fill.session_id)
        return False
    insert_fill_if_absent(
        engine,
        fill.execution_id,
        fill.client_order_id,
        abs(fill.quantity),
        fill.price,
        fill.commission,
        fill.time,
    )
    update_order_row(engine, fill.client_order_id, "filled", fill.broker_order_id)
    return newly


def _already_applied(client: redis.Redis, fill: Fill) -> bool:
    """Whether the session's trades already hold this execution id (fills are idempotent)."""
    raws: list[bytes] = client.lrange(trades_key(fill.session_id), 0, -1)  # type: ignore[assignment]
    needle = json.dumps({"execution_id": fill.execution_id}, separators=(",", ":"))[1:-1].encode()
    return any(needle in raw and _execution_id(raw) == fill.execution_id for raw in raws)


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
