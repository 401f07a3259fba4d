"""A roll's marks on its session's Redis state, always written under the session's lock.

- ``rolling`` (the strategy does not run while it is true), ``rolling_close_order_id`` and
  ``rolling_close_qty`` (the close's client order id and the signed position it closes);
- the meta field ``_roll`` (JSON ``RollMeta``): which roll holds the session, the last step it
  recorded, whether the roll itself stopped the session's trading (so a resumed roll that ends
  gives trading back, and only then), and the position's protective stop before the close.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from models.codec import state_key
from models.meta import ROLL_FIELD
from models.state import WorkingOrder
from trading.exceptions import OperatorAction
from workers.db.event_rows import record_event
from workers.orders.fills import LOCK_WAIT_S
from workers.runtime import Runtime
from workers.state.store import Lease, StateChanges

log = logging.getLogger(__name__)

"""Meta field of the state hash: the session's current roll (``RollMeta`` JSON, ``{}`` none)."""


class RollNeedsOperator(OperatorAction):
    """The broker's answers leave the roll ambiguous: it stopped and waits for the operator."""


@dataclass(frozen=True, slots=True)
class RollMeta:
    roll_id: int | None = None
    step: str = ""
    stopped_trading: bool = False
    stop_price: Decimal | None = None

    def to_json(self) -> str:
        if self.roll_id is None:
            return "{}"
        return json.dumps(
            {
                "id": self.roll_id,
                "step": self.step,
                "stopped_trading": self.stopped_trading,
                "stop_price": None if self.stop_price is None else str(self.stop_price),
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> RollMeta:
        if not raw:
            return cls()
        data: dict[str, Any] = json.loads(raw)
        if not data:
            return cls()
        stop = data.get("stop_price")
        return cls(
            roll_id=int(data["id"]),
            step=str(data.get("step", "")),
            stopped_trading=bool(data.get("stopped_trading", False)),
            stop_price=None if stop is None else Decimal(str(stop)),
        )


def meta_of(lease: Lease) -> RollMeta:
    return RollMeta.from_json(lease.fields.get(ROLL_FIELD))


def read_meta(rt: Runtime, session_id: str) -> RollMeta:
    raw: Any = rt.redis.hget(state_key(session_id), ROLL_FIELD)
    return RollMeta.from_json(raw)


def write(
    rt: Runtime,
    lease: Lease,
    values: Mapping[str, Any] | None = None,
    meta: RollMeta | None = None,
) -> None:
    extra = {} if meta is None else {ROLL_FIELD: meta.to_json()}
    rt.store.write(lease, StateChanges.of(values or {}, meta=extra))


def mark_step(rt: Runtime, session_id: str, roll_id: int, step: str) -> None:
    """Record in the session's hash that the roll reached ``step`` (progress, for operators)."""
    with rt.store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
        current = meta_of(lease)
        if current.roll_id != roll_id or current.step == step:
            return
        write(rt, lease, meta=replace(current, step=step))


def add_working_order(
    rt: Runtime,
    session_id: str,
    order: WorkingOrder,
    values: Mapping[str, Any] | None = None,
) -> None:
    """Put the roll's order among the session's working copies (so its fill is applied when
    it comes, ``workers.orders.fills``), with any other ``values``, in one fenced write."""
    with rt.store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
        orders: dict[str, WorkingOrder] = lease.value("orders")
        changes: dict[str, Any] = dict(values or {})
        if order.client_order_id not in orders:
            changes["orders"] = {**orders, order.client_order_id: order}
        if changes:
            write(rt, lease, changes)


def stop_trading(rt: Runtime, session_id: str, roll_id: int) -> bool:
    """The session stops trading because of its roll; True if this call stopped it. Its
    ``_roll`` remembers it, so a roll that is resumed and ends gives trading back."""
    with rt.store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
        trading: bool = lease.value("trading")
        current = meta_of(lease)
        if not trading:
            return False
        meta = current if current.roll_id == roll_id else RollMeta(roll_id, "failed")
        write(rt, lease, {"trading": False}, replace(meta, stopped_trading=True))
    return True


def event(
    rt: Runtime,
    session_id: str,
    severity: str,
    message: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    record_event(rt.engine, session_id, "roll", severity, message, details)  # type: ignore[arg-type]
    log.log(
        logging.ERROR if severity in {"error", "critical"} else logging.INFO,
        "session %s: %s",
        session_id,
        message,
    )
