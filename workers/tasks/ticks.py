"""Tick tasks (queue ``ticks``): drain ready sessions; sweep for sessions nobody drains."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from workers.dispatch import names
from workers.runtime import runtime


@shared_task(name=names.TICKS_DRAIN, bind=True)
def drain(self: Task[Any, Any], drainer_id: str) -> dict[str, Any]:
    """Serve ready sessions for a time budget; hand over to a fresh task if work remains."""
    rt = runtime()
    report = rt.drainer.drain(drainer_id, rt.settings.ticks.drain_budget_s)
    if not report.finished:
        self.app.send_task(names.TICKS_DRAIN, args=[drainer_id], queue=rt.settings.queues.ticks)
    return {"sessions": report.sessions, "ticks": report.ticks, "finished": report.finished}


@shared_task(name=names.TICKS_SWEEP)
def sweep() -> int:
    """Start drain tasks for due sessions that nobody drains (a worker died holding them)."""
    return runtime().publisher.wake()
