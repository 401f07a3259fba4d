"""Protective stops the tick step saw touched whose fill has not come back (``_progress``'s
``stops_out``, ``trading.stops``): the session takes the position as closed from the touch on.
A paper broker fills such a stop in data time; a live broker fills it at its own market, or
not at all. A touch the broker did not fill is dropped (the session holds its position again,
with an event), and entries decided on it are cancelled unsent (``unfilled_touch_key``,
``workers.orders.send``):

- the stop still works at the broker ``TOUCH_GRACE_S`` after a poll first saw it so
  (``settle_unfilled_touch``);
- the stop ended at the broker unfilled (cancelled by a move or an exit, rejected, lost): no
  poll of it is left to settle the touch, so the entry it holds back settles it
  (``settle_ended_touches``);
- an entry that ended unfilled takes the touches of its own stop with it (``drop_touches_of``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import redis
from sqlalchemy.engine import Engine

from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from models.state import WorkingOrder
from models.tables import OrderRow
from trading.stops import StopOut
from workers.db.event_rows import record_event
from workers.state.store import Lease, StateChanges, StateStore
from workers.stops.rows import newest_stop_at
from workers.stops.sync import CLEAR_KEY_TTL_S, LOCK_WAIT_S

log = logging.getLogger(__name__)

ENDED_UNFILLED = ("cancelled", "rejected", "lost")


TOUCH_GRACE_S = 15.0
"""How long a live broker may take to fill a stop the session saw touched in the data before
the touch is taken as one the broker did not see (``settle_unfilled_touch``)."""


def touch_seen_key(session_id: str, coid: str) -> str:
    """When a poll first found stop ``coid`` still working after the session saw it touched."""
    return f"tf:{{{session_id}}}:touch:{coid}"


def unfilled_touch_key(session_id: str) -> str:
    """The data time (ms) of the newest touch the broker did not fill (``settle_unfilled_touch``):
    an entry decided after it was decided on a position taken as closed that was not."""
    return f"tf:{{{session_id}}}:unfilled-touch"


def record_unfilled_touch(
    client: redis.Redis, session_id: str, at_ms: int, until_ms: int | None
) -> None:
    """The broker never filled the stop the session saw touched at ``at_ms`` (data time); the
    session believed it filled until ``until_ms``, the data time it had read to when the touch
    was dropped (None: unknown, any later decision counts): entries decided in between were
    decided on a position taken as closed that was not."""
    window = f"{at_ms}-{'' if until_ms is None else until_ms}"
    client.set(unfilled_touch_key(session_id), window, ex=CLEAR_KEY_TTL_S)


def decided_in_unfilled_touch(client: redis.Redis, session_id: str, decided_ms: int) -> bool:
    """Whether a decision at ``decided_ms`` fell in the session's last unfilled touch window."""
    raw = client.get(unfilled_touch_key(session_id))
    if not isinstance(raw, bytes):
        return False
    start, _, end = raw.decode().partition("-")
    return int(start) <= decided_ms and (not end or decided_ms <= int(end))


def drop_touches_of(lease: Lease, entry: WorkingOrder) -> dict[str, str]:
    """An entry that ended unfilled (cancelled, rejected, lost, or dropped unsent): the touches
    of its own stop the session took as closing it are gone with it. The new ``_progress``
    meta field (``StateChanges.meta``), empty when nothing changes."""
    raw = lease.fields.get(PROGRESS_FIELD)
    if not raw or entry.stop_price is None:
        return {}
    progress = TickProgress.from_json(raw)
    own = (1 if entry.side == "buy" else -1, entry.stop_price)
    kept = tuple(out for out in progress.stops_out if (out.direction, out.price) != own)
    if kept == progress.stops_out:
        return {}
    return {PROGRESS_FIELD: replace(progress, stops_out=kept).to_json()}


def settle_unfilled_touch(
    store: StateStore,
    engine: Engine,
    session_id: str,
    stop: OrderRow,
    now: Callable[[], float] = time.time,
) -> bool:
    """A poll found ``stop`` still working at a live broker. If the session took its position
    as closed by a touch of that stop (``trading.stops``: a ``StopOut``) and the broker has not
    filled it for ``TOUCH_GRACE_S`` since a poll first saw that, the broker never saw the touch
    (the stop was not working yet, or its market never reached it): the touch is dropped, so
    the session holds its position again, with an event; entries decided on it are cancelled
    (``unfilled_touch_key``, ``workers.orders.send``). True when it dropped one."""
    if stop.stop_price is None:
        return False
    direction, price = (1 if stop.side == "sell" else -1), Decimal(stop.stop_price)
    seen = touch_seen_key(session_id, stop.client_order_id)
    with store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
        raw = lease.fields.get(PROGRESS_FIELD)
        progress = TickProgress.from_json(raw) if raw else None
        outs = [] if progress is None else progress.stops_out
        mine = [out for out in outs if (out.direction, out.price) == (direction, price)]
        if progress is None or not mine:
            store.client.delete(seen)
            return False
        store.client.set(seen, repr(now()), nx=True, ex=CLEAR_KEY_TTL_S)
        first = store.client.get(seen)
        if not isinstance(first, bytes) or now() - float(first) < TOUCH_GRACE_S:
            return False
        kept = tuple(out for out in outs if out not in mine)
        meta = {PROGRESS_FIELD: replace(progress, stops_out=kept).to_json()}
        store.write(lease, StateChanges(meta=meta))
        newest = max(out.at_ms for out in mine)
        record_unfilled_touch(store.client, session_id, newest, progress.last_ms)
        store.client.delete(seen)
    message = (
        f"protective stop {stop.client_order_id} at {price} was touched in the data but is "
        f"still working at the broker after {TOUCH_GRACE_S:.0f}s: the position is held again"
    )
    log.warning("session %s: %s", session_id, message)
    details = {"stop": stop.client_order_id, "price": str(price), "touched_ms": newest}
    record_event(engine, session_id, "risk", "warning", message, details)
    return True


def settle_ended_touches(store: StateStore, engine: Engine, session_id: str) -> list[str]:
    """Drop the touches whose stop ended at the broker unfilled: the newest stop row of the
    session at the touch's side and price is cancelled, rejected or lost (a move or an exit
    cancelled it, or the broker refused it). Nothing is left to poll that would settle such a
    touch, and the broker will never fill it: the session holds its position again, with an
    event, and entries decided on the touch are cancelled unsent, as in
    ``settle_unfilled_touch``. A touch whose stop still works, or filled, is left as it is.
    The ids of the stops whose touches were dropped."""
    with store.locked(session_id, wait_s=LOCK_WAIT_S) as lease:
        raw = lease.fields.get(PROGRESS_FIELD)
        progress = TickProgress.from_json(raw) if raw else None
        if progress is None or not progress.stops_out:
            return []
        ended: dict[str, list[StopOut]] = {}
        for out in progress.stops_out:
            side = "sell" if out.direction == 1 else "buy"
            stop = newest_stop_at(engine, session_id, side, out.price)
            if stop is not None and stop.status in ENDED_UNFILLED:
                ended.setdefault(stop.client_order_id, []).append(out)
        if not ended:
            return []
        dropped = [out for outs in ended.values() for out in outs]
        kept = tuple(out for out in progress.stops_out if out not in dropped)
        meta = {PROGRESS_FIELD: replace(progress, stops_out=kept).to_json()}
        store.write(lease, StateChanges(meta=meta))
        newest = max(out.at_ms for out in dropped)
        record_unfilled_touch(store.client, session_id, newest, progress.last_ms)
    for coid, outs in ended.items():
        message = (
            f"protective stop {coid} at {outs[0].price} was touched in the data but ended at "
            "the broker unfilled: the position is held again"
        )
        touched_ms = max(out.at_ms for out in outs)
        details = {"stop": coid, "price": str(outs[0].price), "touched_ms": touched_ms}
        log.warning("session %s: %s", session_id, message)
        record_event(engine, session_id, "risk", "warning", message, details)
    return list(ended)
