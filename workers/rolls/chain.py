"""Starting, resuming, aborting and failing rolls; the Celery chain that runs one.

A roll runs as one Celery chain on the ``rolls`` queue, one thin task per step
(``tradefleet.rolls.<step>``, each taking the roll id), with an errback
(``tradefleet.rolls.failed``): a step that fails for good marks the roll failed, and the
session stops trading with an event. The operator then resumes the roll (the chain again from
the step its row records) or aborts it.

A roll's await step is also run by a wake when the fill of its order is applied
(``workers.rolls.wake``); the one task that goes past the step (its claim) goes on: a woken one
queues the rest of the chain (``continue_roll``), and the chain's own copy stops. Resuming
releases the claims of the steps not recorded done.

Each chain carries the roll under a lease of its own (``workers.rolls.carrier``); a running
roll whose lease lapsed (its task died with its worker's host) is resumed from its row's step
by the sweep (``sweep_rolls``, beat every ``settings.rolls.sweep_interval_s``), and the chain
it superseded stops wherever it comes back.

Triggers: ``check_rolls`` (beat, every ``roll_check_interval_s``) starts a roll for each active
session inside its contract's roll window, judged on the session's clock (the data time of its
last tick in replay, the wall clock before its first tick). A session never has two unfinished
rolls: the partial unique index on ``rolls`` refuses the second.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery import Celery, chain
from celery.canvas import Signature

from models.codec import state_key
from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from models.state import OrderStatus
from models.tables import RollRow
from trading.exceptions import BadInput, UnknownSession
from trading.rolls import (
    DONE,
    decision_time,
    next_step,
    roll_target,
    session_clock,
    should_roll,
    steps_from,
)
from workers.brokers.commands import CancelOrder, QueryOrder
from workers.calendars.exchange_holidays import exchange_holidays
from workers.db import roll_rows
from workers.db.order_rows import update_order_row
from workers.db.roll_rows import RollExists
from workers.db.session_rows import get_session_row, list_session_rows
from workers.dispatch import names
from workers.orders.fills import LOCK_WAIT_S, deliver_fills
from workers.orders.send import session_broker
from workers.rolls import carrier, marks, wake
from workers.rolls.marks import RollMeta
from workers.runtime import Runtime

log = logging.getLogger(__name__)

OPERATOR_STATUSES = frozenset({"failed", "needs_operator"})


def roll_chain(
    app: Celery, roll_id: int, from_step: str, queue: str, carrier: str
) -> Signature[Any]:
    """The chain of the steps from ``from_step`` to the end, with the errback on every one;
    each task is given the chain's token, ``carrier`` (``workers.rolls.carrier``)."""
    steps = steps_from(from_step)
    if not steps:
        raise BadInput(f"roll {roll_id} has no step left to run")
    kwargs = {"carrier": carrier}
    signatures = [
        app.signature(
            names.roll_step(step), args=(roll_id,), kwargs=kwargs, immutable=True, queue=queue
        )
        for step in steps
    ]
    errback = app.signature(
        names.ROLLS_FAILED, args=(roll_id,), kwargs=kwargs, immutable=True, queue=queue
    )
    return chain(*signatures).on_error(errback)


def launch(rt: Runtime, app: Celery, row: RollRow) -> None:
    """Queue the chain from the row's step, handing the roll's lease to it first (any chain
    still about is superseded)."""
    _launch(rt, app, row.id, row.step)


def continue_roll(rt: Runtime, app: Celery, roll_id: int, after: str) -> None:
    """Queue the chain of the steps after ``after`` (a woken await step that went past it);
    nothing once ``after`` was the last step."""
    following = next_step(after)
    if following != DONE:
        _launch(rt, app, roll_id, following)


def _launch(rt: Runtime, app: Celery, roll_id: int, from_step: str) -> None:
    token = carrier.new_token()
    carrier.hand_to(rt.redis, roll_id, token, rt.settings.rolls.lease_s)
    roll_chain(app, roll_id, from_step, rt.settings.queues.rolls, token).apply_async()


def resume_stalled(rt: Runtime, app: Celery, roll_id: int) -> RollRow | None:
    """The sweep: a running roll whose lease lapsed (nobody carries it) gets a chain from the
    step its row records, with the claims of the steps not recorded done released; None if
    the roll is not running any more or a chain took the lease meanwhile."""
    token = carrier.new_token()
    if not carrier.take_over(rt.redis, roll_id, token, rt.settings.rolls.lease_s):
        return None
    row = roll_rows.require_roll(rt.engine, roll_id)
    if row.status != "running" or row.step == DONE:
        return None
    wake.release_claims(rt.redis, roll_id, row.step)
    marks.event(
        rt,
        row.session_id,
        "warning",
        f"roll {roll_id} resumed at {row.step} by the sweep: no worker carried it",
        {"roll_id": roll_id, "step": row.step},
    )
    roll_chain(app, roll_id, row.step, rt.settings.queues.rolls, token).apply_async()
    return row


def session_clock_of(rt: Runtime, session_id: str, now: datetime) -> tuple[datetime, datetime]:
    """(the session's clock, the decision time of a roll decided now) — see ``trading.rolls``."""
    raw: Any = rt.redis.hget(state_key(session_id), PROGRESS_FIELD)
    progress = TickProgress.from_json(raw.decode() if isinstance(raw, bytes) else raw)
    return session_clock(progress.last_ms, now), decision_time(progress.last_ms, now)


def start_roll(
    rt: Runtime,
    app: Celery,
    session_id: str,
    to: str | None = None,
    decided_at: datetime | None = None,
) -> RollRow:
    """Create the roll's row (refused if the session has an unfinished roll) and queue its
    chain. ``decided_at``: the data time the roll is decided at (default: the session's)."""
    session = get_session_row(rt.engine, session_id)
    if session is None:
        raise UnknownSession(session_id)
    if session.status != "active":
        raise BadInput(f"session {session_id} is {session.status}; only active sessions roll")
    state = rt.store.load(session_id)
    contract = state.session.contract
    target = roll_target(contract, to)
    when = decided_at or session_clock_of(rt, session_id, datetime.now(UTC))[1]
    row = roll_rows.create_roll(rt.engine, session_id, contract, target, when)
    marks.event(
        rt,
        session_id,
        "info",
        f"roll {row.id} started: {contract} -> {target}, decided at {when.isoformat()}",
        {"roll_id": row.id},
    )
    launch(rt, app, row)
    return row


def find_roll(rt: Runtime, target: str) -> RollRow:
    """A roll by its id (digits), or a session id's unfinished (else latest) roll."""
    if target.isdigit():
        return roll_rows.require_roll(rt.engine, int(target))
    row = roll_rows.unfinished_roll(rt.engine, target)
    if row is None:
        rolls = roll_rows.list_rolls(rt.engine, target)
        if not rolls:
            raise roll_rows.UnknownRoll(f"{target} (no roll id, no session with a roll)")
        row = rolls[-1]
    return row


def resume_roll(rt: Runtime, app: Celery, roll_id: int) -> RollRow:
    """A failed or waiting roll runs again from the step its row roll_rows."""
    row = roll_rows.require_roll(rt.engine, roll_id)
    if row.status not in OPERATOR_STATUSES:
        raise BadInput(f"roll {roll_id} is {row.status}; only a failed or waiting roll resumes")
    wake.release_claims(rt.redis, roll_id, row.step)
    row = roll_rows.update_roll(rt.engine, roll_id, status="running", error=None)
    marks.event(
        rt, row.session_id, "info", f"roll {roll_id} resumed at {row.step}", {"roll_id": roll_id}
    )
    launch(rt, app, row)
    return row


def abort_roll(rt: Runtime, roll_id: int) -> RollRow:
    """End a failed or waiting roll without finishing it: its working orders are cancelled at
    the broker, fills already made are applied to the session, ``rolling`` is cleared, and the
    session stays NOT trading (the operator checks its position, e.g. with ``tradefleet
    reconcile positions``, and restarts it)."""
    row = roll_rows.require_roll(rt.engine, roll_id)
    if row.status not in OPERATOR_STATUSES:
        raise BadInput(f"roll {roll_id} is {row.status}; only a failed or waiting roll aborts")
    session = get_session_row(rt.engine, row.session_id)
    if session is None:
        raise UnknownSession(row.session_id)
    broker = session_broker(rt, session)
    cancelled = []
    for coid in (row.close_client_order_id, row.open_client_order_id):
        if coid is None:
            continue
        order = broker.order(QueryOrder(session.account, coid))
        if order is not None and order.status == "working":
            ack = broker.cancel_order(CancelOrder(session.account, coid))
            ended: OrderStatus = "cancelled" if ack.status == "cancelled" else "lost"
            update_order_row(rt.engine, coid, ended, metrics=rt.redis)
            cancelled.append(coid)
    deliver_fills(
        rt.redis, rt.store, rt.engine, broker, session.account, rt.settings.risk, rt.settings.stops
    )
    with rt.store.locked(row.session_id, wait_s=LOCK_WAIT_S) as lease:
        orders = {
            k: v for k, v in lease.value("orders").items() if not k.startswith(f"roll-{roll_id}-")
        }
        marks.write(
            rt,
            lease,
            {
                "trading": False,
                "rolling": False,
                "rolling_close_order_id": None,
                "rolling_close_qty": None,
                "orders": orders,
            },
            RollMeta(),
        )
    row = roll_rows.set_status(rt.engine, roll_id, "aborted", metrics=rt.redis)
    marks.event(
        rt,
        row.session_id,
        "warning",
        f"roll {roll_id} aborted at step {row.step} by the operator; the session is not "
        f"trading (cancelled: {', '.join(cancelled) or 'nothing'})",
        {"roll_id": roll_id, "cancelled": cancelled},
    )
    return row


def mark_failed(rt: Runtime, roll_id: int) -> RollRow:
    """The errback: the roll failed (unless it already waits for the operator), the session
    stops trading (``rolling`` stays true: no strategy until the roll is resumed or aborted),
    an event."""
    row = roll_rows.require_roll(rt.engine, roll_id)
    if row.status == "running":
        row = roll_rows.set_status(rt.engine, roll_id, "failed", metrics=rt.redis)
    marks.stop_trading(rt, row.session_id, roll_id)
    marks.event(
        rt,
        row.session_id,
        "error",
        f"roll {roll_id} {row.status} at step {row.step}: {row.error or 'a step failed'}; "
        "the session is not trading (tradefleet roll ID --resume | --abort)",
        {"roll_id": roll_id, "step": row.step},
    )
    return row


def record_error(rt: Runtime, roll_id: int, error: str) -> None:
    """What made a step fail for good, on the roll's row (its status is the errback's)."""
    row = roll_rows.get_roll(rt.engine, roll_id)
    if row is not None and row.error is None:
        roll_rows.update_roll(rt.engine, roll_id, error=error[:2000])


@dataclass(frozen=True, slots=True)
class CheckResult:
    started: list[int]
    skipped: list[str]


def check_rolls(rt: Runtime, app: Celery, now: datetime | None = None) -> CheckResult:
    """Start a roll for each active session inside its roll window, on the session's clock."""
    wall = now or datetime.now(UTC)
    holidays = exchange_holidays()
    started: list[int] = []
    skipped: list[str] = []
    for session in list_session_rows(rt.engine):
        if session.status != "active" or roll_rows.unfinished_roll(rt.engine, session.id):
            continue
        try:
            state = rt.store.load(session.id)
            clock, decided = session_clock_of(rt, session.id, wall)
            contract = state.session.contract
            if not should_roll(contract, clock, holidays, rt.settings.rolls.window_days):
                continue
            started.append(start_roll(rt, app, session.id, decided_at=decided).id)
        except (RollExists, UnknownSession) as exc:
            skipped.append(f"{session.id}: {exc}")
        except BadInput as exc:
            log.warning("session %s: no roll check (%s)", session.id, exc)
            skipped.append(f"{session.id}: {exc}")
    return CheckResult(started, skipped)


def sweep_rolls(rt: Runtime, app: Celery) -> list[int]:
    """Resume every running roll nobody carries (``resume_stalled``); the ids resumed."""
    resumed: list[int] = []
    for row in roll_rows.running_rolls(rt.engine):
        if carrier.carried(rt.redis, row.id):
            continue
        if resume_stalled(rt, app, row.id) is not None:
            log.warning("roll %s was carried by nobody: resumed at %s", row.id, row.step)
            resumed.append(row.id)
    return resumed
