"""The console's JSON: the read models of ``workers.operations.fleet`` as plain data, Decimals
as strings (exact), times as ISO 8601 (aware UTC), a candle's and a marker's ``time`` in
epoch seconds (the chart's UTC time)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from models.state import WorkingOrder
from models.tables import RollRow
from trading.fleet_view import AccountTotals
from trading.market import EPOCH, Candle
from workers.operations.account_view import AccountView
from workers.operations.fleet import EventView, FleetView, SessionView
from workers.operations.session_view import Marker, OrderView, SessionDetail, SessionLive


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def event_json(event: EventView | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        "id": event.id,
        "created_at": _time(event.created_at),
        "session_id": event.session_id,
        "kind": event.kind,
        "severity": event.severity,
        "message": event.message,
        "details": dict(event.details),
    }


def session_json(view: SessionView) -> dict[str, Any]:
    broker = view.broker
    return {
        "id": view.session_id,
        "name": view.name,
        "account": view.account,
        "product": view.product,
        "contract": view.contract,
        "timeframe": view.timeframe,
        "strategy": view.strategy,
        "sql_status": view.sql_status,
        "status": view.status,
        "reasons": list(view.reasons),
        "position": view.position,
        "position_contract": view.position_contract,
        "average_price": _dec(view.average_price),
        "stop_price": _dec(view.stop_price),
        "broker": None
        if broker is None
        else {
            "quantity": broker.quantity,
            "average_price": _dec(broker.average_price),
            "fills_pending": broker.fills_pending,
            "as_of": _time(broker.as_of),
            "age_s": broker.age_s,
        },
        "broker_check": view.broker_check,
        "group_sessions": view.group_sessions,
        "group_position": view.group_position,
        "realized": str(view.realized),
        "unrealized": str(view.unrealized),
        "commissions": str(view.commissions),
        "risk": str(view.risk),
        "heat": str(view.heat),
        "last_tick_at": _time(view.last_tick_at),
        "tick_age_s": view.tick_age_s,
        "tick_lag_ms": view.tick_lag_ms,
        "candles_closed": view.candles_closed,
        "ticks_processed": view.ticks_processed,
        "last_event": event_json(view.last_event),
    }


def totals_json(totals: AccountTotals) -> dict[str, Any]:
    return {
        "account": totals.account,
        "sessions": totals.sessions,
        "position": totals.position,
        "realized": str(totals.realized),
        "unrealized": str(totals.unrealized),
        "commissions": str(totals.commissions),
        "risk": str(totals.risk),
        "heat": str(totals.heat),
    }


def fleet_json(fleet: FleetView) -> dict[str, Any]:
    return {
        "as_of": _time(fleet.as_of),
        "sessions": [session_json(view) for view in fleet.sessions],
        "accounts": [totals_json(t) for t in fleet.totals],
    }


def candle_json(candle: Candle | None) -> dict[str, Any] | None:
    """A candle for the chart: ``time`` in epoch seconds (the chart's UTC time)."""
    if candle is None:
        return None
    return {
        "time": int((candle.start - EPOCH).total_seconds()),
        "open": str(candle.open),
        "high": str(candle.high),
        "low": str(candle.low),
        "close": str(candle.close),
        "volume": candle.volume,
    }


def marker_json(marker: Marker) -> dict[str, Any]:
    return {
        "time": int((marker.candle_time - EPOCH).total_seconds()),
        "filled_at": _time(marker.time),
        "quantity": marker.quantity,
        "price": str(marker.price),
        "intent": marker.intent,
    }


def working_json(order: WorkingOrder) -> dict[str, Any]:
    """A working copy the session holds without its SQL row."""
    return {
        "client_order_id": order.client_order_id,
        "contract": order.contract,
        "side": order.side,
        "quantity": order.quantity,
        "order_type": order.order_type,
        "intent": order.intent,
        "status": order.status,
        "filled_quantity": order.filled_quantity,
        "limit_price": _dec(order.limit_price),
        "stop_price": _dec(order.stop_price),
        "created_at": _time(order.created_at),
    }


def order_json(order: OrderView) -> dict[str, Any]:
    working = order.working
    return {
        "client_order_id": order.client_order_id,
        "contract": order.contract,
        "side": order.side,
        "quantity": order.quantity,
        "order_type": order.order_type,
        "intent": order.intent,
        "status": order.status,
        "limit_price": _dec(order.limit_price),
        "stop_price": _dec(order.stop_price),
        "broker_order_id": order.broker_order_id,
        "decided_at": _time(order.decided_at),
        "working": None
        if working is None
        else {
            "status": working.status,
            "filled_quantity": working.filled_quantity,
            "stop_price": _dec(working.stop_price),
            "limit_price": _dec(working.limit_price),
        },
    }


def roll_json(roll: RollRow) -> dict[str, Any]:
    return {
        "id": roll.id,
        "session_id": roll.session_id,
        "from_contract": roll.from_contract,
        "to_contract": roll.to_contract,
        "quantity": roll.quantity,
        "status": roll.status,
        "step": roll.step,
        "decided_at": _time(roll.decided_at),
        "close_client_order_id": roll.close_client_order_id,
        "open_client_order_id": roll.open_client_order_id,
        "close_fill_price": _dec(roll.close_fill_price),
        "open_fill_price": _dec(roll.open_fill_price),
        "error": roll.error,
        "updated_at": _time(roll.updated_at),
    }


def detail_json(detail: SessionDetail) -> dict[str, Any]:
    state = detail.state
    return {
        "session": session_json(detail.view),
        "candles": [candle_json(c) for c in detail.candles],
        "partial": None if state is None else candle_json(state.latest_partial_candle),
        "markers": [marker_json(m) for m in detail.markers],
        "orders": [order_json(o) for o in detail.orders],
        "working_only": [working_json(o) for o in detail.working_only],
        "fills": [
            {
                "execution_id": f.execution_id,
                "client_order_id": f.client_order_id,
                "side": f.side,
                "quantity": f.quantity,
                "price": str(f.price),
                "commission": str(f.commission),
                "filled_at": _time(f.filled_at),
            }
            for f in detail.fills
        ],
        "events": [event_json(e) for e in detail.events],
        "strategy": None
        if state is None
        else {
            "module": state.strategy.module,
            "args": state.strategy.args,
            "state": state.strategy.state,
        },
        "rolls": [roll_json(r) for r in detail.rolls],
        "roll_events": [event_json(e) for e in detail.roll_events],
    }


def live_json(live: SessionLive) -> dict[str, Any]:
    return {
        "session": session_json(live.view),
        "last_closed": candle_json(live.last_closed),
        "partial": candle_json(live.partial),
        "stop_price": _dec(live.stop_price),
        "markers": [marker_json(m) for m in live.markers],
    }


def account_json(view: AccountView) -> dict[str, Any]:
    return {
        "account": view.account,
        "equity": _dec(view.equity),
        "open_risk": str(view.open_risk),
        "heat": str(view.heat),
        "heat_warn": str(view.heat_warn),
        "heat_block": str(view.heat_block),
        "warned": view.warned,
        "blocked": view.blocked,
        "halted": view.halted,
        "loss_day": view.loss_day,
        "day": view.day,
        "day_pnl": _dec(view.day_pnl),
        "max_daily_loss": _dec(view.max_daily_loss),
        "entries_refused": view.entries_refused,
        "totals": None if view.totals is None else totals_json(view.totals),
    }


def dumps(data: Any) -> str:
    """Compact JSON (the SSE ``data:`` line)."""
    return json.dumps(data, separators=(",", ":"))
