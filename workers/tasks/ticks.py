"""Tick tasks (queue ``ticks``): drain ready sessions; sweep for sessions nobody drains."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from workers.runtime import runtime
from workers.ticks.publisher import DRAIN_TASK


@shared_task(name=DRAIN_TASK, bind=True)
def drain(self: Task[Any, Any], drainer_id: str) -> dict[str, Any]:
    """Serve ready sessions for a time budget; hand over to a fresh task if work remains."""
    rt = runtime()
    report = rt.drainer.drain(drainer_id, rt.settings.ticks.drain_budget_s)
    if not report.finished:
        self.app.send_task(DRAIN_TASK, args=[drainer_id], queue=rt.settings.queues.ticks)
    return {"sessions": report.sessions, "ticks": report.ticks, "finished": report.finished}


@shared_task(name="tradefleet.ticks.sweep")
def sweep() -> int:
    """Start drain tasks for due sessions that nobody drains (a worker died holding them)."""
    return runtime().publisher.wake()
