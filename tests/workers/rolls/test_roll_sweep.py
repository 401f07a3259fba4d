"""A whole worker host killed (every process of the worker, SIGKILL) while it holds a step of a
roll, with the visibility timeout left at its default (an hour): the message it held does not
come back within the test, so the fleet itself must notice that nobody carries the roll. Beat's
roll sweep finds the roll's lease lapsed and resumes the chain from the step its row records
(``workers.rolls.carrier``, ``workers.rolls.chain.sweep_rolls``); the roll ends done within a
minute of the kill, with one close and one open at the broker.

The step is held either by the test-only pause (``roll_test_pause_at``: the step did its work
and has not recorded itself done) or, for an await step, by its retry's countdown (the worker
holds the retry's message until its ETA). A worker stopped (SIGSTOP) while it holds such a
retry, and woken once another worker finished the roll, runs that retry as a superseded chain:
it does nothing.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from models.state import SessionState
from tests.kit.wait import wait_until
from tests.kit.workers import CeleryWorker, unacked_headers
from tests.workers.rolls.roll_rig import Prices, RollRig, assert_rolled
from trading.rolls import STEPS
from workers.db.order_rows import count_rows
from workers.dispatch.names import roll_step

pytestmark = pytest.mark.integration

ACCOUNT = "ACC-HOST"
WITHIN_S = 60.0
"""The roll is done this long after the host died, at the latest."""
COUNTDOWN_S = 5.0
"""An await step's retry countdown in the countdown tests (the default)."""
FINISHED = ("done", "failed", "needs_operator")


def held_messages(rig: RollRig, task: str) -> list[dict[str, Any]]:
    return unacked_headers(rig.client, task)


@dataclass(frozen=True, slots=True)
class Started:
    session_id: str
    roll_id: int
    worker: CeleryWorker
    last_tick: datetime
    prices: Prices


def start(rig: RollRig, pause_at: str = "") -> Started:
    """A session holding 2 ESZ13 whose roll has started on a worker (pausing at
    ``pause_at``), beat running; nothing printed after the last tick yet."""
    sid = rig.create("victim", ACCOUNT)
    worker = rig.start_roll_worker(pause_at=pause_at)
    rig.start_beat()
    ticks = rig.prime()
    rig.give_position(sid, ACCOUNT, 2, ticks[0].time)
    prices = Prices(ticks[-1].price - Decimal("0.75"), ticks[-1].price - Decimal("5.50"))
    return Started(sid, rig.start_roll(sid).id, worker, ticks[-1].time, prices)


def wait_await_close_countdown(rig: RollRig, roll_id: int) -> None:
    """Until ``await_close`` waits out a retry's countdown, its message held by the worker."""
    task = roll_step("await_close")
    wait_until(
        lambda: (
            rig.roll(roll_id).step == "await_close"
            and any(h.get("retries", 0) >= 1 for h in held_messages(rig, task))
        ),
        timeout=60,
        interval=0.05,
        what="await_close to hold its retry",
    )


def kill_host(worker: CeleryWorker) -> float:
    """SIGKILL to the worker's whole process group (the host dies); when it died."""
    worker.kill()
    worker.wait_exit()
    return time.monotonic()


def assert_finished_by_the_sweep(
    rig: RollRig, run: Started, before: SessionState, died: float, held: str
) -> None:
    sid, roll_id = run.session_id, run.roll_id
    left = WITHIN_S - (time.monotonic() - died)
    done = rig.wait_status(roll_id, *FINISHED, timeout=left)
    assert_rolled(rig, sid, ACCOUNT, done, 2, before, run.prices)
    assert rig.broker_seq(ACCOUNT) == 3, "entry, close, open: nothing placed twice"
    assert count_rows(rig.engine, sid) == (3, 3)
    assert held_messages(rig, roll_step(held)), "the dead host's message is still unacked"
    resumed = [e.message for e in rig.events(sid, "roll") if "by the sweep" in e.message]
    assert resumed and all(f"roll {roll_id} resumed at " in m for m in resumed), resumed
    done_events = [e for e in rig.events(sid, "roll") if f"roll {roll_id} done" in e.message]
    assert len(done_events) == 1


@pytest.mark.parametrize("step", [s for s in STEPS if s != "await_close"])
def test_a_host_killed_holding_a_paused_step_the_sweep_finishes_the_roll(
    redis_url: str, tmp_path: Path, step: str
) -> None:
    with RollRig(redis_url, tmp_path / "run") as rig:
        run = start(rig, pause_at=step)
        before = rig.state(run.session_id)
        rig.price(run.last_tick, run.prices)
        wait_until(
            lambda: rig.paused_at(run.roll_id) == step,
            timeout=60,
            interval=0.05,
            what=f"the roll to pause at {step}",
        )
        assert rig.roll(run.roll_id).step == step, "the pause comes before the step is recorded"
        died = kill_host(run.worker)
        rig.start_roll_worker()
        assert_finished_by_the_sweep(rig, run, before, died, step)


def test_a_host_killed_holding_an_await_steps_countdown_the_sweep_finishes_the_roll(
    redis_url: str, tmp_path: Path
) -> None:
    """No print yet: the close works and ``await_close`` waits out its countdown, its retry's
    message held by the worker until its ETA. The host dies; the prices come; the sweep
    resumes the roll at ``await_close``."""
    with RollRig(redis_url, tmp_path / "run", roll_fill_retry_s=COUNTDOWN_S) as rig:
        run = start(rig)
        before = rig.state(run.session_id)
        wait_await_close_countdown(rig, run.roll_id)
        died = kill_host(run.worker)
        rig.price(run.last_tick, run.prices)
        rig.start_roll_worker()
        assert_finished_by_the_sweep(rig, run, before, died, "await_close")


def test_a_stopped_worker_woken_after_the_sweep_finished_the_roll_does_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    """A worker stopped (SIGSTOP) holding ``await_close``'s retry is carried by nobody: the
    sweep resumes the roll on another worker, which finishes it. Woken (SIGCONT), the stopped
    worker runs its retry, which finds its chain superseded and does nothing."""
    with RollRig(redis_url, tmp_path / "run", roll_fill_retry_s=COUNTDOWN_S) as rig:
        run = start(rig)
        before = rig.state(run.session_id)
        wait_await_close_countdown(rig, run.roll_id)
        run.worker.kill(signal.SIGSTOP)
        stopped_at = time.monotonic()
        rig.price(run.last_tick, run.prices)
        rig.start_roll_worker()
        assert_finished_by_the_sweep(rig, run, before, stopped_at, "await_close")
        finished = rig.roll(run.roll_id)
        events = len(rig.events(run.session_id, "roll"))

        run.worker.kill(signal.SIGCONT)
        wait_until(
            lambda: not held_messages(rig, roll_step("await_close")),
            timeout=60,
            interval=0.1,
            what="the woken worker to run and acknowledge its held retry",
        )
        after = rig.roll(run.roll_id)
        assert (after.status, after.step, after.error) == ("done", "done", None)
        assert after.updated_at == finished.updated_at, "the woken retry left the row alone"
        assert rig.broker_seq(ACCOUNT) == 3, "the woken retry placed nothing"
        assert count_rows(rig.engine, run.session_id) == (3, 3)
        assert len(rig.events(run.session_id, "roll")) == events, "the woken retry did nothing"
