"""Contract rolls end to end through a real worker on ``rolls,orders,ticks``: a long, a short and
a flat session roll ESZ13 → ESH14; ticks during a roll never run the strategy; a close that
never fills fails the roll cleanly, and the operator resumes or aborts it; the beat trigger
starts one roll per session inside its window, on the session's clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.kit.cli import run_cli
from tests.kit.fleet import CONTRACT
from tests.kit.metrics import wait_counted
from tests.kit.wait import wait_until
from tests.workers.rolls.roll_rig import NEW_CONTRACT, Prices, RollRig, assert_rolled
from trading.market import Tick
from workers.celery_app import beat_schedule
from workers.db import roll_rows
from workers.db.roll_rows import RollExists
from workers.metrics.catalog import ROLLS
from workers.rolls.chain import check_rolls
from workers.sessions.create import NewSession, create_session
from workers.state.store import StateChanges
from workers.ticks.snapshots import load_snapshot

pytestmark = pytest.mark.integration


def test_long_short_and_flat_sessions_roll_to_the_next_contract(
    redis_url: str, tmp_path: Path
) -> None:
    with RollRig(redis_url, tmp_path / "run") as rig:
        long_id = rig.create("long", "ACC-LONG")
        short_id = rig.create("short", "ACC-SHORT")
        flat_id = rig.create("flat", "ACC-FLAT")
        rig.start_roll_worker()
        ticks = rig.prime()
        rig.give_position(long_id, "ACC-LONG", 2, ticks[0].time)
        rig.give_position(short_id, "ACC-SHORT", -1, ticks[0].time)
        before = {sid: rig.state(sid) for sid in (long_id, short_id, flat_id)}

        long_roll = rig.start_roll(long_id)
        short_roll = rig.start_roll(short_id)
        flat_roll = rig.start_roll(flat_id)
        assert long_roll.decided_at == ticks[-1].time + timedelta(milliseconds=1)
        with pytest.raises(RollExists):
            rig.start_roll(long_id)
        prices = Prices(ticks[-1].price + Decimal("0.50"), ticks[-1].price - Decimal("6.25"))
        rig.price(ticks[-1].time, prices)
        finished = ("done", "failed", "needs_operator")
        long_done = rig.wait_status(long_roll.id, *finished)
        short_done = rig.wait_status(short_roll.id, *finished)
        flat_done = rig.wait_status(flat_roll.id, *finished)
        assert_rolled(rig, long_id, "ACC-LONG", long_done, 2, before[long_id], prices)
        assert_rolled(rig, short_id, "ACC-SHORT", short_done, -1, before[short_id], prices)
        assert_rolled(rig, flat_id, "ACC-FLAT", flat_done, 0, before[flat_id], prices)
        assert rig.broker_seq("ACC-LONG") == rig.broker_seq("ACC-SHORT") == 3
        assert rig.broker_seq("ACC-FLAT") == 0
        wait_counted(rig.client, ROLLS, {"done": 3})
        entry = ticks[0].ask
        assert entry is not None
        assert rig.state(long_id).account_pnl_info.realized == (prices.old - entry) * 2 * 50

        later = ticks[-1].time + timedelta(minutes=3)
        follow = [
            Tick(NEW_CONTRACT, later + timedelta(seconds=i), prices.new + i, 1) for i in range(5)
        ]
        rig.publisher().publish(NEW_CONTRACT, follow)
        rig.wait_read()
        for sid in (long_id, short_id, flat_id):
            partial = rig.state(sid).latest_partial_candle
            assert partial is not None and partial.close == prices.new + 4
            assert rig.cursor(sid) == rig.last_id(NEW_CONTRACT)


def _set_strategy(rig: RollRig, session_id: str, **changes: Any) -> None:
    """The session's stored strategy reference with ``changes`` (state, args), under its lock."""
    with rig.rt.store.locked(session_id, wait_s=5) as lease:
        strategy = replace(lease.value("strategy"), **changes)
        rig.rt.store.write(lease, StateChanges.of({"strategy": strategy}))


def test_a_stop_held_in_strategy_state_moves_with_the_roll(redis_url: str, tmp_path: Path) -> None:
    """breakout remembers its stop in its state: the roll moves it by the spread, as it moves
    the candles. A strategy whose state cannot be moved (its stored args are broken here)
    stops trading, with an error event; its roll still ends and its state is kept."""
    quiet = ("breakout", (("lookback", "400"), ("atr_period", "3")))
    with RollRig(redis_url, tmp_path / "run") as rig:
        held = rig.create("held", "ACC-HELD", quiet)
        broken = rig.create("broken", "ACC-BROKEN", quiet)
        rig.start_roll_worker()
        ticks = rig.prime()
        rig.give_position(held, "ACC-HELD", 1, ticks[0].time)
        stop = ticks[-1].price - Decimal("12.50")
        _set_strategy(rig, held, state={"stop": str(stop), "stop_side": 1})
        _set_strategy(rig, broken, args={"lookback": "many"})
        before = {sid: rig.state(sid) for sid in (held, broken)}
        rolls = {sid: rig.start_roll(sid) for sid in (held, broken)}
        prices = Prices(ticks[-1].price + Decimal("0.25"), ticks[-1].price + Decimal("4.75"))
        rig.price(ticks[-1].time, prices)
        done = {
            sid: rig.wait_status(roll.id, "done", "failed", "needs_operator")
            for sid, roll in rolls.items()
        }
        assert_rolled(rig, held, "ACC-HELD", done[held], 1, before[held], prices)
        moved = rig.state(held).strategy.state
        assert moved["stop_side"] == 1
        assert isinstance(moved["stop"], str) and Decimal(moved["stop"]) == stop + prices.spread
        snapshot = load_snapshot(rig.engine, held)
        assert snapshot is not None, "recovery must find the state in the new contract's terms"
        assert (snapshot.strategy_state, snapshot.cursor) == (moved, rig.cursor(held))

        after = rig.state(broken)
        assert (done[broken].status, after.session.contract) == ("done", NEW_CONTRACT)
        assert not after.trading
        assert after.strategy == before[broken].strategy
        messages = [e.message for e in rig.events(broken, "roll") if e.severity == "error"]
        assert any("failed at a roll" in m and "stops trading" in m for m in messages), messages


def test_ticks_during_a_roll_do_not_run_the_strategy(redis_url: str, tmp_path: Path) -> None:
    trading = ("sma_cross", (("fast", "3"), ("slow", "8")))
    with RollRig(redis_url, tmp_path / "run") as rig:
        control = rig.create("control", "ACC-CTL", trading)
        rolled = rig.create("rolled", "ACC-ROLL", trading)
        paused = rig.start_roll_worker(pause_at="begin")
        roll = rig.start_roll(rolled)
        wait_until(lambda: rig.paused_at(roll.id) == "begin", what="the roll to begin")
        strategy_before = rig.state(rolled).strategy
        assert rig.state(rolled).rolling

        rig.prime(1_500)
        assert rig.progress("control").signal_seq > 0
        assert rig.sql_orders(session_id=control)
        progress = rig.progress("rolled")
        assert progress.signal_seq == 0
        assert progress.candles_closed == rig.progress("control").candles_closed > 8
        assert rig.state(rolled).strategy == strategy_before
        assert rig.sql_orders(session_id=rolled) == []
        paused.kill()
        paused.wait_exit()


def test_a_close_that_never_fills_fails_the_roll_then_resume_or_abort(
    redis_url: str, tmp_path: Path
) -> None:
    with RollRig(redis_url, tmp_path / "run", roll_fill_max_tries=4) as rig:
        resumed = rig.create("resumed", "ACC-RES")
        aborted = rig.create("aborted", "ACC-ABT")
        rig.start_roll_worker()
        ticks = rig.prime()
        rig.give_position(resumed, "ACC-RES", 1, ticks[0].time)
        rig.give_position(aborted, "ACC-ABT", -2, ticks[0].time)
        before = rig.state(resumed)
        rolls = {sid: rig.start_roll(sid).id for sid in (resumed, aborted)}
        for sid, roll_id in rolls.items():
            row = rig.wait_status(roll_id, "failed", "done")
            assert (row.status, row.step) == ("failed", "await_close"), row.error
            assert "MaxRetriesExceeded" in (row.error or "")
            wait_until(lambda sid=sid: not rig.state(sid).trading, what="trading to stop")
            state = rig.state(sid)
            assert state.rolling and state.rolling_close_order_id == f"roll-{roll_id}-close"
            wait_until(
                lambda sid=sid, roll_id=roll_id: any(
                    e.severity == "error" and f"roll {roll_id} failed" in e.message
                    for e in rig.events(sid, "roll")
                ),
                what="the errback's event (written right after trading stops)",
            )
        assert rig.broker_positions("ACC-RES") == {CONTRACT: 1}
        assert rig.state(resumed).rolling_close_qty == 1
        wait_counted(rig.client, ROLLS, {"failed": 2})

        env = rig.cli_env()
        line = run_cli(env, "roll", str(rolls[aborted]), "--abort").ok().stdout
        assert f"roll {rolls[aborted]} aborted" in line
        after = rig.state(aborted)
        assert (after.rolling, after.trading, after.rolling_close_order_id) == (False, False, None)
        assert after.orders == {}
        assert rig.broker_positions("ACC-ABT") == {CONTRACT: -2}
        assert roll_rows.require_roll(rig.engine, rolls[aborted]).status == "aborted"
        assert "cancelled" in rig.sql_orders(session_id=aborted)[-1].status

        prices = Prices(ticks[-1].price - Decimal("0.25"), ticks[-1].price - Decimal("7"))
        rig.price(ticks[-1].time, prices)
        run_cli(env, "roll", resumed, "--resume").ok()
        done = rig.wait_status(rolls[resumed], "done", "failed", "needs_operator")
        assert_rolled(rig, resumed, "ACC-RES", done, 1, before, prices)
        assert rig.broker_positions("ACC-ABT") == {CONTRACT: -2}
        run_cli(env, "roll", str(rolls[aborted]), "--resume").refused("aborted")
        run_cli(env, "roll", "no-such-session").refused("unknown session")
        run_cli(env, "roll", aborted, "--to", "NQH14").refused("another product")
        shown = run_cli(env, "roll", aborted, "--show", "--json").ok().stdout
        assert '"status": "aborted"' in shown
        run_cli(env, "roll", str(rolls[resumed]), "--abort").refused("done")
        wait_counted(rig.client, ROLLS, {"failed": 2, "aborted": 1, "done": 1})


def test_beat_starts_one_roll_per_session_inside_its_window_on_the_sessions_clock(
    redis_url: str, tmp_path: Path
) -> None:
    """Only ticks are drained here: the started roll's chain waits on ``rolls``, unconsumed."""
    with RollRig(redis_url, tmp_path / "run") as rig:
        rig.start_worker(queues=("ticks",))
        due = rig.create("due", "ACC-DUE")
        early = create_session(
            rig.settings,
            NewSession("early", "ACC-NQ", "NQ", "NQZ13", "sma_cross", {"fast": "3", "slow": "9"}),
        ).session.id
        roll_day = datetime(2013, 12, 12, 15, tzinfo=UTC)
        publisher = rig.publisher()
        publisher.publish(CONTRACT, [Tick(CONTRACT, roll_day, Decimal("1780"), 1)])
        publisher.publish("NQZ13", [Tick("NQZ13", roll_day - timedelta(days=1), Decimal(3400), 1)])
        wait_until(lambda: rig.cursor(due) == rig.last_id(CONTRACT), what="due to read")
        wait_until(lambda: rig.cursor(early) == rig.last_id("NQZ13"), what="early to read")

        first = check_rolls(rig.rt, rig.app, now=datetime(2030, 1, 1, tzinfo=UTC))
        assert len(first.started) == 1
        row = roll_rows.require_roll(rig.engine, first.started[0])
        assert (row.session_id, row.from_contract, row.to_contract) == (due, CONTRACT, "ESH14")
        assert row.decided_at == roll_day + timedelta(milliseconds=1)
        assert check_rolls(rig.rt, rig.app).started == []
        with pytest.raises(RollExists):
            roll_rows.create_roll(rig.engine, due, CONTRACT, "ESH14", roll_day)
    schedule = beat_schedule(rig.settings)["roll-check"]
    assert schedule["task"] == "tradefleet.rolls.check"
    assert schedule["schedule"] == rig.settings.rolls.check_interval_s == 86_400
