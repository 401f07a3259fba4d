"""Sends lost with their worker's host, found and queued again (beat's send sweep).

An order's row is written ``new`` before its send (``tradefleet.orders.send``) is queued. A
send held by a worker whose host dies comes back only after the Redis transport's visibility
timeout (an hour by default); until then the order would not go out. So:

- each try of a send task holds its order's send lease (``holding_send``:
  ``tf:order:<coid>:sending``, renewed while it runs and left for ``settings.orders.send_stale_s``
  after; a batch of a drain round's orders holds every one of its orders' from its start:
  ``holding_sends``), so a send in progress on a live worker, or waiting out its retry's
  countdown, is left alone;
- ``sweep_sends`` (beat, every ``settings.orders.sweep_interval_s``) finds the sessions with an
  order row still ``new`` more than ``send_stale_s`` after it was written and no send lease on
  any of their ``new`` rows, and queues the send of the newest such row of each: the send places
  every earlier ``new`` row of the session first (``workers.orders.send``: decision order), and a
  row the broker already has is refused as a duplicate and reconciled from its answer (the
  client order id is deterministic), so an order never goes out twice.

A roll's orders are not swept: their roll's chain sends them, and the roll sweep resumes a chain
nobody carries (``workers.rolls.chain.sweep_rolls``). A row is queued again at most
``SWEEP_MAX_TRIES`` times (a send that fails for good is not retried forever); the last time
leaves an event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from models.tables import OrderRow
from trading.rolls import ROLL_ORDER_PREFIX
from workers.db.event_rows import record_event
from workers.dispatch import names
from workers.settings import Settings, get_diagnostics
from workers.state.heartbeat import renewing

log = logging.getLogger(__name__)

SENDING_KEY = "tf:order:{coid}:sending"
SWEPT_KEY = "tf:order:{coid}:swept"
SWEPT_TTL_S = 86_400
SWEEP_MAX_TRIES = 5
"""How many times the sweep queues one row's send again before it leaves it to the operator."""
PAUSED_KEY = "tf:test:send-paused:{coid}"
"""TEST ONLY: set when a send pauses at ``TRADEFLEET_SEND_TEST_PAUSE`` (see ``pause_for_test``)."""


def sending_key(client_order_id: str) -> str:
    return SENDING_KEY.format(coid=client_order_id)


def holding_send(
    client: redis.Redis, client_order_id: str, runner: str, stale_s: float
) -> AbstractContextManager[None]:
    """A try of the send of ``client_order_id`` (task ``runner``) runs: its lease is set now,
    renewed every third of ``stale_s`` while the body runs, and left with ``stale_s`` to live
    (longer than a retry's countdown); no sweep queues the order again meanwhile."""
    return holding_sends(client, [client_order_id], runner, stale_s)


def holding_sends(
    client: redis.Redis, client_order_ids: Sequence[str], runner: str, stale_s: float
) -> AbstractContextManager[None]:
    """``holding_send`` for the orders of one send task (a batch, not empty): every lease set
    at once (one round trip) and renewed together, so the batch's later orders are not swept
    while its first ones go out."""
    keys = [sending_key(coid) for coid in client_order_ids]
    ttl_ms = max(1, int(stale_s * 1000))

    def hold() -> bool:
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, runner, px=ttl_ms)
            return all(pipe.execute())

    hold()
    return renewing(hold, stale_s / 3, f"send-{client_order_ids[0]}")


def stalled_sends(
    engine: Engine, client: redis.Redis, now: datetime, stale_s: float
) -> list[tuple[str, str]]:
    """(session id, client order id) of the newest stalled row of each session with one (see
    the module), oldest session first."""
    query = (
        select(OrderRow.session_id, OrderRow.client_order_id, OrderRow.created_at)
        .where(OrderRow.status == "new")
        .order_by(OrderRow.id)
    )
    with Session(engine) as db:
        rows = db.execute(query).all()
    if not rows:
        return []
    with client.pipeline(transaction=False) as pipe:
        for row in rows:
            pipe.exists(sending_key(row.client_order_id))
        leased = pipe.execute()
    cutoff = now - timedelta(seconds=stale_s)
    busy = {row.session_id for row, held in zip(rows, leased, strict=True) if held}
    newest: dict[str, str] = {}
    for row in rows:
        stale = row.created_at <= cutoff and not row.client_order_id.startswith(ROLL_ORDER_PREFIX)
        if stale and row.session_id not in busy:
            newest[row.session_id] = row.client_order_id
    return list(newest.items())


def sweep_sends(
    engine: Engine,
    client: redis.Redis,
    settings: Settings,
    send_task: Callable[..., Any],
    now: datetime,
) -> list[str]:
    """Queue the send of each stalled row (``stalled_sends``); the client order ids queued."""
    queued: list[str] = []
    for session_id, coid in stalled_sends(engine, client, now, settings.orders.send_stale_s):
        swept = SWEPT_KEY.format(coid=coid)
        tries = int(client.incr(swept))  # type: ignore[arg-type]
        client.expire(swept, SWEPT_TTL_S)
        if tries > SWEEP_MAX_TRIES:
            continue
        send_task(names.ORDERS_SEND, args=[session_id, coid], queue=settings.queues.orders)
        queued.append(coid)
        last = tries == SWEEP_MAX_TRIES
        log.warning(
            "session %s: the send of %s was lost; queued again (%s)", session_id, coid, tries
        )
        message = (
            f"order {coid} was still new {settings.orders.send_stale_s:.0f}s after it was "
            f"written and no worker was sending it: its send was queued again"
            + (" for the last time; if it stays new it needs the operator" if last else "")
        )
        details = {"client_order_id": coid, "try": tries}
        record_event(
            engine, session_id, "recovery", "error" if last else "warning", message, details
        )
    return queued


def pause_for_test(client: redis.Redis, client_order_id: str) -> None:
    """TEST ONLY, off unless ``TRADEFLEET_SEND_TEST_PAUSE`` is set: a send task that holds its
    order's send lease says so in Redis and hangs before it sends, so that a crash test can
    SIGKILL the worker holding the send."""
    if not get_diagnostics().send_test_pause:
        return
    client.set(PAUSED_KEY.format(coid=client_order_id), f"{time.time():.3f}")
    log.warning("order %s: TEST pause before its send", client_order_id)
    while True:
        time.sleep(3600)
