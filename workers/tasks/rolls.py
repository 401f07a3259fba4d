"""Roll tasks (queue ``rolls``): one thin task per step of a roll, its errback, the wake, the
trigger.

Each step task takes the roll id and runs ``workers.rolls.steps.run_step``. A step whose roll
is not running (or whose chain copy is behind the roll's row, or whose await step another task
holds) is ignored, ending that copy of the chain. An await step whose order is still working
retries itself after ``settings.rolls.fill_retry_s``, at most ``fill_max_tries`` tries in all; then
it fails, and the errback (``tradefleet.rolls.failed``) marks the roll failed and stops the
session's trading.

Each step task carries its roll under its chain's lease (``workers.rolls.carrier``): it runs
only while the lease is its chain's (or lapsed), renews it while it runs, and leaves it past its
retry's countdown. ``sweep`` (beat) resumes a running roll whose lease lapsed.

``wake`` (sent by the fill path when a roll order's fill is applied, ``workers.dispatch.rolls``)
runs the await step's check at once; if it is the one task that goes past the step, it queues
the rest of the chain, and the chain's own copy stops at its next try. A wake that finds the
order still working, or the step not reached yet, does nothing: the retry stays the fallback.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Ignore

from trading.exceptions import BadInput, RetryLater
from trading.rolls import DONE, STEPS
from workers.db import roll_rows
from workers.dispatch import names
from workers.rolls.carrier import Carrier, holder
from workers.rolls.chain import (
    check_rolls,
    continue_roll,
    mark_failed,
    record_error,
    sweep_rolls,
)
from workers.rolls.steps import Outcome, run_step
from workers.rolls.wake import AWAIT_STEPS, holds_claim
from workers.runtime import runtime

log = logging.getLogger(__name__)

ERROR_WAITS = 3
"""Retries of the errback waiting for the failed step's error (then it goes on without)."""
MAX_RETRIES = 50
"""Retries of a step that met a transient condition (a busy lock, a fill not applied yet)."""
RETRY_BACKOFF_MAX_S = 5
"""The longest countdown of such a retry (the lease outlives it: ``Carrier.hand_on``)."""


class RollStepTask(Task):  # type: ignore[type-arg]
    """Records, on the roll's row, the error that made a step fail for good."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        if args and not _superseded(int(args[0]), str((kwargs or {}).get("carrier", ""))):
            record_error(runtime(), int(args[0]), f"{type(exc).__name__}: {exc}")


def _run(task: Task[Any, Any], roll_id: int, step: str, token: str) -> str:
    rt = runtime()
    held = Carrier(rt.redis, roll_id, token, rt.settings.rolls.lease_s)
    if not held.take():
        log.info("roll %s: another chain carries the roll; step %s not run", roll_id, step)
        raise Ignore()
    try:
        with held.keep():
            outcome = run_step(rt, roll_id, step, _runner(task), held)
    except RetryLater:
        held.hand_on(RETRY_BACKOFF_MAX_S)
        raise
    if outcome is Outcome.STALE:
        raise Ignore()
    if outcome is Outcome.WAIT:
        tries = rt.settings.rolls.fill_max_tries
        held.hand_on(rt.settings.rolls.fill_retry_s)
        raise task.retry(countdown=rt.settings.rolls.fill_retry_s, max_retries=tries - 1)
    held.hand_on(0)
    return outcome.value


def _superseded(roll_id: int, token: str) -> bool:
    """Whether another chain than ``token``'s carries the roll now."""
    current = holder(runtime().redis, roll_id)
    return current is not None and current != token


def _runner(task: Task[Any, Any]) -> str:
    """The task's id: the same for a retry or a redelivery of the same task."""
    return task.request.id or f"local-{uuid.uuid4().hex}"


def _step_task(step: str) -> RollStepTask:
    def run(self: RollStepTask, roll_id: int, carrier: str = "") -> str:
        return _run(self, roll_id, step, carrier)

    run.__name__ = run.__qualname__ = step
    return shared_task(
        name=names.roll_step(step),
        bind=True,
        base=RollStepTask,
        autoretry_for=(RetryLater,),
        retry_backoff=True,
        retry_backoff_max=RETRY_BACKOFF_MAX_S,
        max_retries=MAX_RETRIES,
    )(run)


begin = _step_task("begin")
close = _step_task("close")
await_close = _step_task("await_close")
open_ = _step_task("open")
await_open = _step_task("await_open")
switch = _step_task("switch")
end = _step_task("end")


@shared_task(
    name=names.ROLLS_FAILED,
    bind=True,
    autoretry_for=(RetryLater,),
    retry_backoff=True,
    retry_backoff_max=5,
    max_retries=MAX_RETRIES,
)
def failed(self: Task[Any, Any], roll_id: int, carrier: str = "") -> str:
    """The chain's errback. Celery sends it before the failed step's ``on_failure`` has
    recorded the error, so it waits (a few short retries) for that error to be on the row:
    the failure, its event and the row then say why. A chain superseded by another (the
    sweep's) fails nothing: the roll is carried on."""
    if _superseded(roll_id, carrier):
        return "superseded"
    rt = runtime()
    row = roll_rows.require_roll(rt.engine, roll_id)
    if row.error is None and self.request.retries < ERROR_WAITS:
        raise RetryLater(f"roll {roll_id}: the failed step's error is not recorded yet")
    return mark_failed(rt, roll_id).status


class WakeTask(Task):  # type: ignore[type-arg]
    """A wake that fails for good while it holds its step's claim fails the roll (the chain's
    copy stopped at that claim, so nothing else would): the errback's work, with its error.
    One that fails before claiming leaves the roll to the chain's own retry."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        if len(args) < 2:
            return
        rt = runtime()
        roll_id, step = int(args[0]), str(args[1])
        if holds_claim(rt.redis, roll_id, step, task_id):
            record_error(rt, roll_id, f"{type(exc).__name__}: {exc}")
            mark_failed(rt, roll_id)


@shared_task(
    name=names.ROLLS_WAKE,
    bind=True,
    base=WakeTask,
    autoretry_for=(RetryLater,),
    retry_backoff=True,
    retry_backoff_max=5,
    max_retries=MAX_RETRIES,
)
def wake(self: WakeTask, roll_id: int, step: str) -> str:
    """The fill of await step ``step``'s order was applied: run the step now (see the module).
    No errback: a wake that fails before it holds the step leaves the roll to the chain's own
    retry; one that fails holding it fails the roll (``WakeTask``)."""
    if step not in AWAIT_STEPS:
        raise BadInput(f"only an await step is woken, not {step!r}")
    rt = runtime()
    row = roll_rows.require_roll(rt.engine, roll_id)
    if row.status != "running" or row.step == DONE or STEPS.index(row.step) < STEPS.index(step):
        return "not due"
    outcome = run_step(rt, roll_id, step, _runner(self))
    if outcome in {Outcome.DONE, Outcome.SKIPPED}:
        continue_roll(rt, self.app, roll_id, step)
    return outcome.value


@shared_task(name=names.ROLLS_CHECK)
def check() -> list[int]:
    """Beat: start a roll for each session inside its roll window (on the session's clock)."""
    rt = runtime()
    return check_rolls(rt, check.app).started


@shared_task(name=names.ROLLS_SWEEP)
def sweep() -> list[int]:
    """Beat: resume, from the step its row records, each running roll nobody carries (its
    task died with its worker's host); the ids of the rolls resumed."""
    return sweep_rolls(runtime(), sweep.app)
