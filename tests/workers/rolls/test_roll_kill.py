"""SIGKILL of the whole worker at every step of a roll in turn, each time after the step did its
work and before it recorded itself done (the test-only pause ``roll_test_pause_at``). A new
worker gets the killed task back (visibility timeout 10 s), re-runs the step from the broker's
answers, and the roll completes with exactly one close and one open order at the broker, the
candle history adjusted exactly once, and the session trading the new contract."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.kit.wait import wait_until
from tests.workers.rolls.roll_rig import NEW_CONTRACT, Prices, RollRig, assert_rolled
from trading.rolls import STEPS
from workers.db.order_rows import count_rows

pytestmark = pytest.mark.integration


REDELIVERY = {"visibility_timeout_s": 10}


def test_sigkill_at_every_step_then_a_new_worker_completes_the_roll(
    redis_url: str, tmp_path: Path
) -> None:
    with RollRig(redis_url, tmp_path / "run", **REDELIVERY) as rig:
        sid = rig.create("victim", "ACC-KILL")
        worker = rig.start_roll_worker(pause_at=STEPS[0])
        ticks = rig.prime()
        rig.give_position(sid, "ACC-KILL", 2, ticks[0].time)
        before = rig.state(sid)
        roll = rig.start_roll(sid)
        prices = Prices(ticks[-1].price - Decimal("0.75"), ticks[-1].price - Decimal("5.50"))
        rig.price(ticks[-1].time, prices)

        for index, step in enumerate(STEPS):
            wait_until(
                lambda step=step: rig.paused_at(roll.id) == step,
                timeout=60,
                interval=0.05,
                what=f"the roll to pause at {step}",
            )
            assert rig.roll(roll.id).step == step, "the pause comes before the step is recorded"
            worker.kill()
            worker.wait_exit()
            rig.clear_pause(roll.id)
            rig.wait_redeliverable()
            after = STEPS[index + 1] if index + 1 < len(STEPS) else ""
            worker = rig.start_roll_worker(pause_at=after)

        done = rig.wait_status(roll.id, "done", "failed", "needs_operator", timeout=60)
        assert_rolled(rig, sid, "ACC-KILL", done, 2, before, prices)
        assert rig.broker_seq("ACC-KILL") == 3, "entry, close, open: nothing placed twice"
        assert count_rows(rig.engine, sid) == (3, 3)
        assert [t.client_order_id for t in rig.state(sid).trades] == [
            "test-entry-ACC-KILL",
            f"roll-{roll.id}-close",
            f"roll-{roll.id}-open",
        ]
        assert rig.state(sid).contract_details.symbol == NEW_CONTRACT
