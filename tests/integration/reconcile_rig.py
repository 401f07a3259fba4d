"""Helpers shared by the reconciliation tests: a rig (private Redis, SQLite, paper broker in
db 1) from ``tickpath_harness``, an in-process ``Runtime`` on the same settings, and ways to
give a session a position or an order behind its back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from models.codec import state_key
from models.state import OpenPosition, SessionState, WorkingOrder
from tests.kit.fleet import CONTRACT, SessionPlan, TickPathRig, replay_ticks
from trading.reconcile import RECONCILE_FIELD, ReconcileMeta
from workers.brokers.commands import PlaceOrder
from workers.brokers.paper.broker import PaperBroker
from workers.db.order_rows import insert_order_if_absent, update_order_row
from workers.db.session_rows import list_events
from workers.runtime import Runtime
from workers.settings import Settings
from workers.state.store import StateChanges
from workers.stops.sync import parent_of

T0 = replay_ticks()[0].time
"""Data time of the first replay tick: orders decided then fill on the published ticks."""


def make_rig(redis_url: str, workdir: Path, **overrides: Any) -> TickPathRig:
    return TickPathRig(redis_url, workdir, **overrides)


def runtime_for(settings: Settings) -> Runtime:
    return Runtime(settings)


def create(rig: TickPathRig, name: str, account: str) -> str:
    plan = SessionPlan(name, account, "sma_cross", (("fast", "3"), ("slow", "8")))
    return rig.create_sessions([plan])[name]


def paper(rt: Runtime, account: str) -> PaperBroker:
    broker = rt.broker("paper", {"account": account})
    assert isinstance(broker, PaperBroker)
    return broker


def state(rig: TickPathRig, session_id: str) -> SessionState:
    return rig.store.load(session_id)


def quantity(rig: TickPathRig, session_id: str) -> int:
    position = state(rig, session_id).open_position
    return 0 if position is None else position.quantity


def meta(rig: TickPathRig, session_id: str) -> ReconcileMeta:
    raw = rig.client.hget(state_key(session_id), RECONCILE_FIELD)
    return ReconcileMeta.from_json(raw)


def set_position(rig: TickPathRig, session_id: str, qty: int, price: str) -> None:
    with rig.store.locked(session_id, wait_s=5) as lease:
        position = OpenPosition(CONTRACT, qty, Decimal(price), opened_at=datetime.now(UTC))
        rig.store.write(lease, StateChanges.of({"open_position": position}))


def local_order(
    rig: TickPathRig,
    session_id: str,
    coid: str,
    side: str = "buy",
    order_type: str = "market",
    limit: str | None = None,
    status: str = "working",
    *,
    working_copy: bool = True,
    stop: str | None = None,
) -> WorkingOrder:
    """The session's own order: its durable row, and (unless told not to) its working copy; a
    stop order is a protective stop (an exit, good till cancelled)."""
    order = WorkingOrder(
        client_order_id=coid,
        contract=CONTRACT,
        side=side,  # type: ignore[arg-type]
        quantity=1,
        order_type=order_type,  # type: ignore[arg-type]
        intent="exit" if order_type == "stop" else "entry",
        status=status,  # type: ignore[arg-type]
        created_at=T0,
        limit_price=None if limit is None else Decimal(limit),
        stop_price=None if stop is None else Decimal(stop),
    )
    tif = "gtc" if order_type == "stop" else "day"
    assert insert_order_if_absent(rig.engine, session_id, order, T0, tif)
    update_order_row(rig.engine, coid, status)  # type: ignore[arg-type]
    if working_copy:
        with rig.store.locked(session_id, wait_s=5) as lease:
            orders = {**lease.value("orders"), coid: order}
            rig.store.write(lease, StateChanges.of({"orders": orders}))
    return order


def place(
    broker: PaperBroker,
    account: str,
    session_id: str,
    coid: str,
    side: str = "buy",
    order_type: str = "market",
    limit: str | None = None,
    stop: str | None = None,
) -> str:
    """Send an order to the paper broker directly (no task, no delivery); its status. A stop
    attached to an entry (by its id) is sent attached to it, good till cancelled."""
    ack = broker.place_order(
        PlaceOrder(
            account=account,
            session_id=session_id,
            client_order_id=coid,
            contract=CONTRACT,
            side=side,  # type: ignore[arg-type]
            quantity=1,
            order_type=order_type,  # type: ignore[arg-type]
            limit_price=None if limit is None else Decimal(limit),
            stop_price=None if stop is None else Decimal(stop),
            time_in_force="gtc" if order_type == "stop" else "day",
            decided_at=T0,
            parent_client_order_id=parent_of(coid),
        )
    )
    return ack.status


def reconciliation_events(rig: TickPathRig, session_id: str) -> list[Any]:
    return list(list_events(rig.engine, session_id=session_id, kind="reconciliation"))


def with_settings(rig: TickPathRig, **changes: Any) -> Settings:
    return Settings(**{**rig.settings.model_dump(), **changes})


__all__ = ["CONTRACT", "T0", "replace"]
