"""The wake of a roll's await step when its order's fill is applied (``workers.rolls.wake``).

Real Redis, real Celery workers on ``rolls,orders,ticks`` (the roll rig). A roll whose await step
retries only every 60 s still finishes within seconds of its fill, because the fill path wakes
the step. A wake and the chain's retry racing on the same await step never run the rest of the
chain twice, whichever of them holds the step: the test pauses the holder after it took the
step's claim and before it recorded the step done (``roll_test_pause_at``), lets the other one
run the step in full, kills the worker, and a new worker finishes the roll from the holder's
redelivered task: one close, one open, one switch, one end.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from tests.kit.wait import wait_until
from tests.kit.workers import CeleryWorker
from tests.workers.rolls.roll_rig import Prices, RollRig, assert_rolled
from trading.exceptions import ServiceUnavailable
from trading.rolls import await_step_of, close_order_id, open_order_id
from workers import runtime as runtime_module
from workers.db import roll_rows
from workers.db.order_rows import count_rows
from workers.dispatch.names import ORDERS_POLL, ROLLS_WAKE
from workers.rolls import chain
from workers.rolls.wake import CLAIM_KEY, release_claims, take_claim
from workers.tasks.rolls import wake as wake_task
from workers.tools.demo import run as demo_run
from workers.tools.processes import ChildProcesses

pytestmark = pytest.mark.integration


LONG_RETRY_S = 60.0
REDELIVERY = {"visibility_timeout_s": 10}
FINISHED = ("done", "failed", "needs_operator")


def test_only_roll_orders_name_an_await_step() -> None:
    assert await_step_of(close_order_id(7)) == (7, "await_close")
    assert await_step_of(open_order_id(12)) == (12, "await_open")
    for other in ("a1b2c3d4e5f60718-3-1", "a1b2c3d4e5f60718-stop-2", "roll-7-open-stop", "roll-"):
        assert await_step_of(other) is None, other
    for malformed in ("roll-07-close", "roll--close", "roll-x-open", "roll-²-open"):
        assert await_step_of(malformed) is None, malformed


def test_a_claim_is_held_by_one_task_id_and_released_on_resume(redis_client: redis.Redis) -> None:
    assert take_claim(redis_client, 3, "await_close", "chain-task")
    assert take_claim(redis_client, 3, "await_close", "chain-task"), "a redelivery holds it"
    assert not take_claim(redis_client, 3, "await_close", "wake-task")
    assert take_claim(redis_client, 3, "await_open", "wake-task"), "one claim per step"
    assert take_claim(redis_client, 3, "switch", "anyone"), "only await steps are claimed"
    assert take_claim(redis_client, 3, "switch", "anyone else")
    release_claims(redis_client, 3, "await_open")
    assert not take_claim(redis_client, 3, "await_close", "resumed-task"), "recorded done"
    assert take_claim(redis_client, 3, "await_open", "resumed-task")
    ttl = cast(int, redis_client.ttl(CLAIM_KEY.format(roll_id=3, step="await_close")))
    assert ttl > 86_400


def test_a_wake_that_fails_holding_its_step_fails_the_roll(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain's copy stopped at the wake's claim, so a wake that fails for good holding it
    must fail the roll (as the errback would); one that fails without it leaves the roll to
    the chain. No worker serves the roll: the failure handler runs here on the rig's runtime."""
    with RollRig(redis_url, tmp_path / "run") as rig:
        monkeypatch.setattr(runtime_module, "_current", rig.rt)
        sid = rig.create("failing", "ACC-FAIL")
        roll = rig.start_roll(sid)
        roll_rows.update_roll(rig.engine, roll.id, step="await_close")
        assert take_claim(rig.client, roll.id, "await_close", "holder")
        args = (roll.id, "await_close")

        wake_task.on_failure(RuntimeError("boom"), "bystander", args, {}, None)
        assert (rig.roll(roll.id).status, rig.roll(roll.id).error) == ("running", None)
        assert rig.state(sid).trading

        wake_task.on_failure(RuntimeError("boom"), "holder", args, {}, None)
        failed = rig.roll(roll.id)
        assert (failed.status, failed.step, failed.error) == (
            "failed",
            "await_close",
            "RuntimeError: boom",
        )
        assert not rig.state(sid).trading
        assert any(f"roll {roll.id} failed" in e.message for e in rig.events(sid, "roll"))


def test_a_fill_wakes_its_await_step_long_before_the_retry(redis_url: str, tmp_path: Path) -> None:
    """The close rests (no print after the decision); the await step has tried once and
    retries in a minute. The close's fill is then applied by the order poll task (as any
    delivery of the account's fills would): the roll is done within seconds of it."""
    with RollRig(redis_url, tmp_path / "run", roll_fill_retry_s=LONG_RETRY_S) as rig:
        sid = rig.create("woken", "ACC-WAKE")
        rig.start_roll_worker()
        ticks = rig.prime()
        rig.give_position(sid, "ACC-WAKE", 1, ticks[0].time)
        before = rig.state(sid)
        roll = rig.start_roll(sid)
        _wait_retry_scheduled(rig, "await_close")
        assert rig.roll(roll.id).step == "await_close"

        prices = Prices(ticks[-1].price + Decimal("0.25"), ticks[-1].price - Decimal("5.75"))
        rig.price(ticks[-1].time, prices)
        applied_at = time.monotonic()
        rig.app.send_task(ORDERS_POLL, args=[sid, close_order_id(roll.id), 1], queue="orders")
        done = rig.wait_status(roll.id, *FINISHED, timeout=LONG_RETRY_S / 2)
        assert time.monotonic() - applied_at < LONG_RETRY_S / 2
        assert_rolled(rig, sid, "ACC-WAKE", done, 1, before, prices)
        assert rig.broker_seq("ACC-WAKE") == 3, "entry, close, open"


def test_wakes_racing_the_retry_that_holds_the_step_stop(redis_url: str, tmp_path: Path) -> None:
    """The close fills when it is placed (the roll is still closing: no wake), so the chain's
    await_close finds it filled on its first try, holds the step and pauses before recording
    it done. Wakes then run the whole step beside it and stop at its claim. The killed chain
    task, redelivered, goes on: the rest of the chain runs once."""
    with RollRig(redis_url, tmp_path / "run", **REDELIVERY) as rig:
        sid = rig.create("held", "ACC-HELD")
        paused = rig.start_roll_worker(pause_at="await_close")
        ticks = rig.prime()
        rig.give_position(sid, "ACC-HELD", 2, ticks[0].time)
        before = rig.state(sid)
        prices = Prices(ticks[-1].price - Decimal("0.50"), ticks[-1].price + Decimal("3.25"))
        decided = ticks[-1].time + timedelta(milliseconds=1)
        rig.price(ticks[-1].time, prices)
        rig.wait_read()
        roll = chain.start_roll(rig.rt, rig.app, sid, decided_at=decided)
        _wait_paused(rig, roll.id, "await_close")
        holder = _claim(rig, roll.id, "await_close")
        assert holder in _received([paused], "tradefleet.rolls.await_close")
        assert not _received([paused], ROLLS_WAKE)

        wakes = [
            rig.app.send_task(ROLLS_WAKE, args=[roll.id, "await_close"], queue="rolls")
            for _ in range(3)
        ]
        for result in wakes:
            wait_until(result.ready, timeout=30, what="a wake to run the step")
            assert result.get(timeout=1) == "stale"
        assert rig.roll(roll.id).step == "await_close", "no wake recorded the step"

        rolled = _kill_and_finish(rig, paused, roll.id)
        _assert_rolled_once(rig, rolled, sid, "ACC-HELD", 2, before, prices, roll.id)
        assert _claim(rig, roll.id, "await_close") == holder


def test_a_retry_racing_the_wake_that_holds_the_step_stops(redis_url: str, tmp_path: Path) -> None:
    """The close rests and the chain's await_close retries; the close's fill, applied by the
    order poll task, wakes the step, and the wake holds it and pauses before recording it done.
    The chain's retry then runs the whole step beside it and stops at its claim, ending the
    chain's copy. The killed wake, redelivered, goes on and queues the rest: it runs once."""
    retry_s = 15.0
    with RollRig(redis_url, tmp_path / "run", roll_fill_retry_s=retry_s, **REDELIVERY) as rig:
        sid = rig.create("woken", "ACC-WOKEN")
        paused = rig.start_roll_worker(pause_at="await_close")
        ticks = rig.prime()
        rig.give_position(sid, "ACC-WOKEN", -1, ticks[0].time)
        before = rig.state(sid)
        roll = rig.start_roll(sid)
        _wait_retry_scheduled(rig, "await_close")

        prices = Prices(ticks[-1].price + Decimal("1.25"), ticks[-1].price - Decimal("4"))
        rig.price(ticks[-1].time, prices)
        rig.app.send_task(ORDERS_POLL, args=[sid, close_order_id(roll.id), 1], queue="orders")
        _wait_paused(rig, roll.id, "await_close")
        holder = _claim(rig, roll.id, "await_close")
        assert holder in _received([paused], ROLLS_WAKE)
        chain_tasks = _received([paused], "tradefleet.rolls.await_close")
        assert holder not in chain_tasks
        wait_until(
            lambda: chain_tasks & _ignored([paused], "tradefleet.rolls.await_close"),
            timeout=retry_s * 2,
            interval=0.2,
            what="the chain's retry to run the step and stop at the wake's claim",
        )
        assert rig.roll(roll.id).step == "await_close", "the retry did not record the step"

        rolled = _kill_and_finish(rig, paused, roll.id)
        _assert_rolled_once(rig, rolled, sid, "ACC-WOKEN", -1, before, prices, roll.id)


def test_the_demo_waits_while_its_rolls_progress_and_names_a_stall(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker serves the roll: the demo's wait outlasts its stall time while the roll's
    recorded step keeps moving (moved here by hand), shows where the roll stands, and fails
    with one line once the roll stops moving."""
    monkeypatch.setattr(demo_run, "ROLL_STALL_S", 2.0)
    with RollRig(redis_url, tmp_path / "run") as rig:
        sid = rig.create("demo", "ACC-DEMO")
        roll = rig.start_roll(sid)
        demo = demo_run.Demo(rig.settings, ChildProcesses(log_dir=tmp_path / "logs"))
        demo.client, demo.session_ids = rig.client, [sid]
        shown: list[str] = []
        steps = iter(("close", "await_close", "open", "await_open"))
        started = time.monotonic()
        moved = {"at": started}

        def show(phase: str, published: int, summaries: list[Any]) -> None:
            shown.append(phase)
            if time.monotonic() - moved["at"] > 0.5:
                step = next(steps, None)
                if step is not None:
                    roll_rows.update_roll(rig.engine, roll.id, step=step)
                moved["at"] = time.monotonic()

        with pytest.raises(ServiceUnavailable) as stalled:
            demo._while_rolling(show, "rolling", 0, [(sid, roll.id)], lambda: False)
        assert time.monotonic() - started > 4.0, "the moves kept it waiting past the stall time"
        message = str(stalled.value)
        assert message.startswith("the demo's rolls made no progress for 2s")
        assert f"roll {roll.id} await_open" in message and "\n" not in message
        assert f"rolling: roll {roll.id} begin" in shown
        assert f"rolling: roll {roll.id} await_open" in shown


# ------------------------------------------------------------------ helpers


def _wait_retry_scheduled(rig: RollRig, step: str) -> None:
    """Until a worker holds a retry of ``step`` for later (it tried once, the order works)."""

    def scheduled() -> bool:
        replies = rig.app.control.inspect(timeout=0.5).scheduled() or {}
        return any(
            entry["request"]["name"] == f"tradefleet.rolls.{step}"
            for entries in replies.values()
            for entry in entries
        )

    wait_until(scheduled, timeout=60, interval=0.1, what=f"a retry of {step} to be scheduled")


def _wait_paused(rig: RollRig, roll_id: int, step: str) -> None:
    wait_until(
        lambda: rig.paused_at(roll_id) == step,
        timeout=60,
        interval=0.05,
        what=f"the roll to pause at {step}",
    )


def _claim(rig: RollRig, roll_id: int, step: str) -> str:
    raw = cast(bytes | None, rig.client.get(CLAIM_KEY.format(roll_id=roll_id, step=step)))
    assert raw is not None, f"nobody holds {step}"
    return raw.decode()


def _log_ids(workers: Iterable[CeleryWorker], task: str, event: str) -> set[str]:
    pattern = re.compile(rf"Task {re.escape(task)}\[([0-9a-f-]+)\] {event}")
    return {found for w in workers for found in pattern.findall(w.log_text())}


def _received(workers: Iterable[CeleryWorker], task: str) -> set[str]:
    """The ids of the ``task`` messages the workers received (their logs)."""
    return _log_ids(workers, task, "received")


def _ignored(workers: Iterable[CeleryWorker], task: str) -> set[str]:
    """The ids of the ``task`` runs that stopped their copy of the chain (``Ignore``)."""
    return _log_ids(workers, task, "ignored")


def _kill_and_finish(
    rig: RollRig, paused: CeleryWorker, roll_id: int
) -> tuple[Any, list[CeleryWorker]]:
    """Kill the paused worker; a new one gets the holder back and finishes the roll."""
    paused.kill()
    paused.wait_exit()
    rig.clear_pause(roll_id)
    rig.wait_redeliverable()
    fresh = rig.start_roll_worker()
    done = rig.wait_status(roll_id, *FINISHED, timeout=60)
    return done, [paused, fresh]


def _assert_rolled_once(
    rig: RollRig,
    rolled: tuple[Any, list[CeleryWorker]],
    sid: str,
    account: str,
    quantity: int,
    before: Any,
    prices: Prices,
    roll_id: int,
) -> None:
    done, workers = rolled
    assert_rolled(rig, sid, account, done, quantity, before, prices)
    assert rig.broker_seq(account) == 3, "entry, close, open: nothing placed twice"
    assert count_rows(rig.engine, sid) == (3, 3)
    for step in ("open", "await_open", "switch", "end"):
        ran = _received(workers, f"tradefleet.rolls.{step}")
        assert len(ran) == 1, f"{step} ran in {len(ran)} tasks: {sorted(ran)}"
    messages = [e.message for e in rig.events(sid, "roll")]
    assert sum(f"roll {roll_id} done" in m for m in messages) == 1, messages
