"""Order tasks (queue ``orders``): send an order, or a drain round's orders in one task
(``send_batch``), poll a resting one, apply fills (also on a broker's push: ``deliver``), queue
again the sends lost with their worker's host (``sweep``, beat)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery import Task, shared_task

from trading.exceptions import RetryLater
from workers.dispatch import names
from workers.orders.deliver import deliver_account
from workers.orders.send import SendOutcome, poll_order, send_order
from workers.orders.sweep import holding_send, holding_sends, pause_for_test, sweep_sends
from workers.reconcile.order_check import mend_stop
from workers.runtime import Runtime, runtime
from workers.stops.sync import STOP_POLL_INTERVAL_S, is_stop_id, keep_polling, start_polling

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
MAX_POLLS = 300
BATCH_RETRY_S = 1.0
"""An order of a batch that must wait (``RetryLater``) is queued again alone after this long
(then retried with the send task's backoff), as the send task's own first retry would be."""


@shared_task(
    name=names.ORDERS_SEND,
    bind=True,
    autoretry_for=(RetryLater,),
    retry_backoff=True,
    retry_backoff_max=5,
    max_retries=50,
)
def send(self: Task[Any, Any], session_id: str, client_order_id: str) -> str:
    """Place one order (idempotent by client order id) and apply the fills it brings; each try
    holds the order's send lease, so the send sweep leaves it alone."""
    rt = runtime()
    runner = self.request.id or "local"
    with holding_send(rt.redis, client_order_id, runner, rt.settings.orders.send_stale_s):
        pause_for_test(rt.redis, client_order_id)
        outcome = send_order(rt, session_id, client_order_id)
    _follow_up(rt, self.app.send_task, session_id, client_order_id, outcome)
    return outcome.status


@shared_task(name=names.ORDERS_SEND_BATCH, bind=True)
def send_batch(self: Task[Any, Any], orders: list[list[str]]) -> list[str]:
    """Send a drain round's orders (``[session id, client order id]`` each, in decision
    order), one after the other as ``send`` would, holding every one's send lease from the
    start. An order that must wait (``RetryLater``: a broker that did not answer, a fill its
    session has not recorded yet) is queued again alone as ``send``, and so is every later
    order of its session in the batch (they go out after it); one that fails otherwise is
    logged and left ``new`` for the send sweep, and the batch goes on. The status of each."""
    rt = runtime()
    runner = self.request.id or "local"
    statuses: list[str] = []
    waiting: set[str] = set()
    if not orders:
        return statuses
    coids = [coid for _, coid in orders]
    with holding_sends(rt.redis, coids, runner, rt.settings.orders.send_stale_s):
        for session_id, coid in orders:
            status = "retry"
            if session_id not in waiting:
                status = _send_one_of_batch(rt, self.app.send_task, session_id, coid)
            if status == "retry":
                waiting.add(session_id)
                self.app.send_task(
                    names.ORDERS_SEND,
                    args=[session_id, coid],
                    queue=rt.settings.queues.orders,
                    countdown=BATCH_RETRY_S,
                )
            statuses.append(status)
    return statuses


def _send_one_of_batch(
    rt: Runtime, send_task: Callable[..., Any], session_id: str, client_order_id: str
) -> str:
    """One order of ``send_batch``: its status, ``retry`` if it must wait, ``failed`` if it
    failed otherwise (logged)."""
    try:
        pause_for_test(rt.redis, client_order_id)
        outcome = send_order(rt, session_id, client_order_id)
        _follow_up(rt, send_task, session_id, client_order_id, outcome)
    except RetryLater as exc:
        log.info("order %s waits (%s); its send is queued again alone", client_order_id, exc)
        return "retry"
    except Exception:
        log.exception("order %s: send failed; the send sweep queues it again", client_order_id)
        return "failed"
    return outcome.status


def _follow_up(
    rt: Runtime,
    send_task: Callable[..., Any],
    session_id: str,
    client_order_id: str,
    outcome: SendOutcome,
) -> None:
    """What follows a send: a stop the broker ended is mended, a resting order polled."""
    if outcome.ended_at_broker and is_stop_id(client_order_id):
        mend_stop(rt, session_id, client_order_id, outcome.status)
    if outcome.resting and is_stop_id(client_order_id):
        start_polling(rt.redis, session_id, client_order_id)
    elif outcome.resting:
        send_task(
            names.ORDERS_POLL,
            args=[session_id, client_order_id, 1],
            queue=rt.settings.queues.orders,
            countdown=POLL_INTERVAL_S,
        )


@shared_task(
    name=names.ORDERS_POLL,
    bind=True,
    autoretry_for=(RetryLater,),
    retry_backoff=True,
    retry_backoff_max=5,
    max_retries=50,
)
def poll(self: Task[Any, Any], session_id: str, client_order_id: str, attempt: int) -> str:
    """Match a resting order against newer prices; poll again while it rests: an order at
    most ``MAX_POLLS`` times, a protective stop for as long as it rests (it ends filled or
    cancelled when its position closes or its stop moves; ``workers.stops.sync``)."""
    rt = runtime()
    outcome = poll_order(rt, session_id, client_order_id)
    stop = is_stop_id(client_order_id)
    if stop and outcome.ended_at_broker:
        mend_stop(rt, session_id, client_order_id, outcome.status)
    if outcome.resting and (stop or attempt < MAX_POLLS):
        if stop:
            keep_polling(rt.redis, client_order_id)
        self.app.send_task(
            names.ORDERS_POLL,
            args=[session_id, client_order_id, attempt + 1],
            queue=rt.settings.queues.orders,
            countdown=STOP_POLL_INTERVAL_S if stop else POLL_INTERVAL_S,
        )
    return outcome.status


@shared_task(
    name=names.ORDERS_DELIVER,
    autoretry_for=(RetryLater,),
    retry_backoff=True,
    retry_backoff_max=5,
    max_retries=50,
)
def deliver(account: str) -> dict[str, int]:
    """Apply the account's new fills and re-read its acknowledged orders (idempotent; queued
    by a broker's push, coalesced per account: ``workers.orders.deliver``)."""
    outcome = deliver_account(runtime(), account)
    return {
        "sessions": outcome.sessions,
        "fills_applied": outcome.fills_applied,
        "orders_rechecked": outcome.orders_rechecked,
    }


@shared_task(name=names.ORDERS_SWEEP)
def sweep() -> list[str]:
    """Beat: queue again the send of each session's order left ``new`` with no send in
    progress (its task died with its worker's host); the client order ids queued."""
    rt = runtime()
    return sweep_sends(rt.engine, rt.redis, rt.settings, sweep.app.send_task, datetime.now(UTC))
