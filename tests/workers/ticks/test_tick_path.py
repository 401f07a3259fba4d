"""The tick path end to end with real worker processes and a private Redis: the same replay
gives the same result whatever the number of workers, redelivered tasks change nothing, bad
ticks are rejected and counted, a failing strategy stops only its own session."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from celery.result import AsyncResult

from models.state import StrategyRef
from tests.kit.fleet import Fleet
from tests.kit.redis import RedisServer
from tests.kit.replay import DEFAULT_PLANS, SessionPlan, replay_ticks
from tests.kit.runs import reference_run, workers_run
from tests.kit.snapshots import RunResult, assert_consistent, differences, dump
from tests.kit.wait import wait_until
from trading.candles import fold_ticks
from workers.db.event_rows import list_events
from workers.dispatch.names import ORDERS_SEND, TICKS_DRAIN
from workers.settings import Settings
from workers.state.store import StateChanges
from workers.ticks.publisher import RawTick, encode_tick, epoch_ms

pytestmark = pytest.mark.integration

MAX_CANDLES = Settings().state.max_candles


@pytest.fixture(scope="module")
def reference(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return reference_run(redis_server, tmp_path_factory.mktemp("reference"))


def test_reference_run_trades_and_agrees_with_the_broker(reference: RunResult) -> None:
    assert reference.published == len(replay_ticks()) > 5_000
    assert_consistent(reference)
    for name, snap in reference.sessions.items():
        assert snap.state.trading, name
        assert len(snap.orders) >= 4, f"{name} should trade on this day:\n{dump(reference)}"
        assert snap.progress.ticks_rejected == 0, name
        assert len(snap.state.candles) == min(snap.progress.candles_closed, MAX_CANDLES), name


def test_three_workers_give_the_one_worker_result(
    reference: RunResult, redis_url: str, tmp_path: Path
) -> None:
    result = workers_run(redis_url, tmp_path / "run")
    diffs = differences(result, reference)
    assert not diffs, "\n".join(diffs)


def test_redelivered_drain_and_send_tasks_change_nothing(
    reference: RunResult, redis_url: str, tmp_path: Path
) -> None:
    """Every order's send task is delivered three times, racing, while it is still in flight;
    drain tasks are delivered many times over (some under the same drainer id)."""
    with Fleet(redis_url, tmp_path / "run") as rig:
        (name,) = rig.create_sessions(DEFAULT_PLANS[:1])
        session_id = rig.session_ids[name]
        rig.start_workers(count=2, concurrency=3)
        rig.publish_replay(replay_ticks())
        drains = [
            rig.app.send_task(TICKS_DRAIN, args=[f"dup-{i % 4}"], queue="ticks") for i in range(16)
        ]
        sends: list[AsyncResult[str]] = []
        duplicated: set[str] = set()

        def duplicate_new_sends() -> bool:
            for row in rig.sql_orders():
                if row.client_order_id not in duplicated:
                    duplicated.add(row.client_order_id)
                    args = [session_id, row.client_order_id]
                    sends.extend(
                        rig.app.send_task(ORDERS_SEND, args=args, queue="orders") for _ in range(2)
                    )
            return rig.settled()

        wait_until(duplicate_new_sends, timeout=90, interval=0.05, what="the run to settle")
        assert {r.get(timeout=60) for r in sends} == {"filled"}
        assert all(d.get(timeout=60)["finished"] for d in drains)
        first = rig.snapshot()
        again = [
            rig.app.send_task(ORDERS_SEND, args=[session_id, coid], queue="orders")
            for coid in sorted(duplicated)
        ]
        late_drains = [rig.app.send_task(TICKS_DRAIN, args=["late"], queue="ticks")]
        assert {r.get(timeout=60) for r in again} == {"filled"}
        assert late_drains[0].get(timeout=60) == {"sessions": 0, "ticks": 0, "finished": True}
        second = rig.snapshot()

    assert len(duplicated) == len(first.sessions[name].orders) > 10
    assert len(sends) == 2 * len(duplicated)
    assert_consistent(first)
    assert differences(second, first) == []
    diffs = differences(first, reference)
    assert not diffs, "\n".join(diffs)


BAD_ROWS = {
    "bad_price": [("{t}", "NaN", "1"), ("{t}", "-1", "1"), ("{t}", "0", "1")],
    "bad_size": [("{t}", "{p}", "-5")],
    "time_backwards": [("{t_back}", "{p}", "1")],
    "unparseable": [("abc", "{p}", "1"), ("{t}", "", "1")],
}


def test_bad_ticks_are_rejected_counted_and_reported_once_per_reason(
    redis_url: str, tmp_path: Path
) -> None:
    good = list(replay_ticks()[:800])
    rows: list[RawTick] = []
    bad = [(reason, row) for reason, shapes in BAD_ROWS.items() for row in shapes]
    every = len(good) // (len(bad) + 1)
    for index, tick in enumerate(good):
        rows.append(encode_tick(tick))
        if index % every == every - 1 and bad:
            _, (t, p, s) = bad.pop(0)
            t_ms = epoch_ms(tick)
            values = {"t": str(t_ms), "t_back": str(t_ms - 60_000), "p": str(tick.price)}
            rows.append((t.format(**values), p.format(**values), s, "", ""))
    assert not bad
    with Fleet(redis_url, tmp_path / "run") as rig:
        (name,) = rig.create_sessions(DEFAULT_PLANS[:1])
        rig.start_workers(count=1, concurrency=2)
        half = len(rows) // 2
        rig.publish_raw(rows[:half])
        rig.publish_raw(rows[half:])
        rig.wait_settled()
        snap = rig.snapshot().sessions[name]
        events = list_events(rig.engine, session_id=snap.session_id, kind="data")

    expected = {reason: len(shapes) for reason, shapes in BAD_ROWS.items()}
    assert snap.progress.rejected == expected
    assert snap.progress.ticks_processed == len(good)
    assert snap.progress.ticks_processed + snap.progress.ticks_rejected == len(rows)
    folded = fold_ticks(None, good, snap.state.session.timeframe)
    assert snap.state.candles == folded.closed
    assert snap.state.latest_partial_candle == folded.partial
    assert snap.progress.candles_closed == len(folded.closed)
    assert snap.state.trading
    assert len(snap.orders) > 0, "the session keeps trading between the bad ticks"
    assert sorted(e.message for e in events) == sorted(
        f"bad tick rejected: {reason}" for reason in expected
    )
    assert {e.severity for e in events} == {"warning"}


def test_a_failing_strategy_stops_only_its_own_session(
    reference: RunResult, redis_url: str, tmp_path: Path
) -> None:
    """sma_cross raises on invalid stored args (slow below fast, written over its state as a
    bad edit would): that session stops trading with one strategy event; breakout goes on."""
    broken = SessionPlan("sma-broken", "ACC-BAD", "sma_cross", (("fast", "3"), ("slow", "8")))
    healthy = DEFAULT_PLANS[1]
    with Fleet(redis_url, tmp_path / "run") as rig:
        rig.create_sessions((broken, healthy))
        broken_id = rig.session_ids[broken.name]
        with rig.store.locked(broken_id) as lease:
            strategy: StrategyRef = lease.value("strategy")
            bad_args = {**strategy.args, "fast": 8, "slow": 3}
            rig.store.write(lease, StateChanges.of({"strategy": replace(strategy, args=bad_args)}))
        rig.start_workers(count=1, concurrency=2)
        rig.publish_replay(replay_ticks())
        rig.wait_settled()
        result = rig.snapshot()

    stopped = result.sessions[broken.name]
    assert not stopped.state.trading
    assert stopped.orders == () and stopped.broker_orders == ()
    assert [(kind, severity) for kind, severity, _ in stopped.events] == [("strategy", "error")]
    assert "sma_cross" in stopped.events[0][2]
    assert stopped.progress.ticks_processed == result.published
    assert stopped.progress.signal_seq == 0
    assert stopped.state.candles == reference.sessions[healthy.name].state.candles
    diffs = differences(
        RunResult(result.published, result.last_id, {healthy.name: result.sessions[healthy.name]}),
        reference,
    )
    assert not diffs, "\n".join(diffs)
