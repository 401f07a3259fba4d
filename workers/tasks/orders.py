"""Order tasks (queue ``orders``): send an order, poll a resting one, apply fills."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from trading.exceptions import RetryLater
from workers.orders import poll_order, send_order
from workers.runtime import runtime

POLL_TASK = "tradefleet.orders.poll"
POLL_INTERVAL_S = 0.2
MAX_POLLS = 300


@shared_task(
    name="tradefleet.orders.send",
    bind=True,
    autoretry_for=(RetryLater,),
    retry_backoff=True,
    retry_backoff_max=5,
    max_retries=50,
)
def send(self: Task[Any, Any], session_id: str, client_order_id: str) -> str:
    """Place one order (idempotent by client order id) and apply the fills it brings."""
    rt = runtime()
    outcome = send_order(rt, session_id, client_order_id)
    if outcome.resting:
        self.app.send_task(
            POLL_TASK,
            args=[session_id, client_order_id, 1],
            queue=rt.settings.queue_orders,
            countdown=POLL_INTERVAL_S,
        )
    return outcome.status


@shared_task(
    name=POLL_TASK,
    bind=True,
    autoretry_for=(RetryLater,),
    retry_backoff=True,
    retry_backoff_max=5,
    max_retries=50,
)
def poll(self: Task[Any, Any], session_id: str, client_order_id: str, attempt: int) -> str:
    """Match a resting order against newer prices; poll again (bounded) while it rests."""
    rt = runtime()
    outcome = poll_order(rt, session_id, client_order_id)
    if outcome.resting and attempt < MAX_POLLS:
        self.app.send_task(
            POLL_TASK,
            args=[session_id, client_order_id, attempt + 1],
            queue=rt.settings.queue_orders,
            countdown=POLL_INTERVAL_S,
        )
    return outcome.status
