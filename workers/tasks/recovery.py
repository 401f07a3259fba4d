"""The recovery task (queue ``reconcile``): rebuild one session whose Redis state is missing.

Queued once by a worker that met the session without state, or by beat's positions fan-out
(``workers.dispatch.recovery``). A broker that does not answer retries the task later; the
session is never assumed flat.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from trading.exceptions import RetryLater, UnknownSession
from workers.dispatch import names
from workers.recovery.recover import recover_session
from workers.runtime import runtime


@shared_task(
    name=names.RECOVER,
    bind=True,
    autoretry_for=(RetryLater,),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=100,
)
def recover(self: Task[Any, Any], session_id: str) -> str:
    """Rebuild the session from SQL and the broker, then wake the drain tasks."""
    rt = runtime()
    try:
        report = recover_session(rt, session_id, wake=rt.publisher.wake)
    except UnknownSession:
        return f"{session_id}: skipped: unknown session"
    if report.outcome == "failed":
        raise RetryLater(report.line())
    return report.line()
