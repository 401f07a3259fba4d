"""Reconciliation tasks (queue ``reconcile``): beat's fan-outs, and one pass per session.

A positions pass that finds the session busy (an order in flight, a fill inside the grace
period, fills not yet delivered) re-checks it after the grace period, at most
``reconcile_rechecks`` times; after that the next period's pass takes over.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from celery import Task, shared_task

from workers.dispatch import names
from workers.reconcile.order_check import reconcile_orders
from workers.reconcile.position_check import reconcile_positions
from workers.reconcile.schedule import (
    Job,
    fan_out,
    interval_of,
)
from workers.runtime import runtime

MIN_RECHECK_S = 0.5


def _fan_out(task: Task[Any, Any], job: Job) -> dict[str, Any]:
    token = task.request.id or uuid.uuid4().hex
    return fan_out(runtime(), job, time.time(), token, task.app.send_task).as_dict()


@shared_task(name=names.RECONCILE_FAN_OUT_POSITIONS, bind=True)
def fan_out_positions(self: Task[Any, Any]) -> dict[str, Any]:
    """Once per period (whatever the number of beat processes): a positions pass per session."""
    return _fan_out(self, "positions")


@shared_task(name=names.RECONCILE_FAN_OUT_ORDERS, bind=True)
def fan_out_orders(self: Task[Any, Any]) -> dict[str, Any]:
    """Once per period (whatever the number of beat processes): an orders pass per session."""
    return _fan_out(self, "orders")


@shared_task(name=names.RECONCILE_POSITIONS, bind=True)
def positions(self: Task[Any, Any], session_id: str, attempt: int = 0) -> str:
    """One positions pass over one session; a busy session is re-checked shortly."""
    rt = runtime()
    report = reconcile_positions(rt, session_id)
    if report.outcome == "recheck" and attempt < rt.settings.reconcile.rechecks:
        countdown = max(MIN_RECHECK_S, rt.settings.reconcile.grace_s)
        self.app.send_task(
            names.RECONCILE_POSITIONS,
            args=[session_id, attempt + 1],
            queue=rt.settings.queues.reconcile,
            countdown=countdown,
            expires=countdown + interval_of(rt, "positions"),
        )
    return report.line()


@shared_task(name=names.RECONCILE_ORDERS)
def orders(session_id: str) -> str:
    """One orders pass over one session."""
    return reconcile_orders(runtime(), session_id).line()
