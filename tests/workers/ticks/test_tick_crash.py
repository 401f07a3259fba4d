"""SIGKILL of a whole worker (main process and pool) in the middle of draining a replay: a new
worker and the real beat sweep finish it, and the result is the one-worker reference exactly:
no tick lost or applied twice, no client order id sent twice, the same final state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from models.state import OpenPosition, WorkingOrder
from models.tables import OrderRow
from tests.kit.fleet import CONTRACT, Fleet
from tests.kit.redis import RedisServer
from tests.kit.replay import DEFAULT_PLANS, replay_ticks
from tests.kit.runs import reference_run
from tests.kit.snapshots import RunResult, assert_consistent, differences
from tests.kit.wait import wait_until
from trading.exceptions import RetryLater
from trading.intents import client_order_id
from workers.db.order_rows import insert_order_if_absent
from workers.orders.fills import UNRECORDED_FILL_WAIT_S
from workers.orders.send import send_order
from workers.runtime import Runtime
from workers.state.store import StateChanges

pytestmark = pytest.mark.integration


RECOVERY = {
    "visibility_timeout_s": 10,
    "lock_ttl_ms": 2_000,
    "drainer_grace_ms": 2_000,
    "sweep_interval_s": 0.5,
    "tick_batch": 25,
    "max_drainers": 1,
}
"""Quick recovery: redelivery after 10 s, leases and drainer places lapse after 2 s, beat
sweeps every 0.5 s. Small tick batches make the drain long enough to be killed half-way; one
drainer at a time means no queued drain task survives the kill: the sweep must restart it."""


@pytest.fixture(scope="module")
def reference(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return reference_run(redis_server, tmp_path_factory.mktemp("reference"))


def test_sigkill_mid_drain_loses_no_tick_and_sends_no_order_twice(
    reference: RunResult, redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path / "run", **RECOVERY) as rig:
        rig.create_sessions(DEFAULT_PLANS)
        (doomed,) = rig.start_workers(count=1, concurrency=2)
        rig.publish_replay(replay_ticks())
        total = rig.published * len(DEFAULT_PLANS)
        wait_until(
            lambda: rig.consumed() > total // 4 and len(rig.sql_orders()) > 20,
            timeout=60,
            what="draining and sending under way",
        )
        doomed.kill()
        doomed.wait_exit()
        consumed_at_kill = rig.consumed()
        orders_at_kill = len(rig.sql_orders())
        assert 0 < consumed_at_kill < total, "the kill must land in the middle of the drain"

        rig.start_beat()
        rig.start_workers(count=1, concurrency=2)
        rig.wait_settled(timeout=120)
        result = rig.snapshot()

    assert result.published == reference.published
    assert len(rig.sql_orders()) >= orders_at_kill
    assert_consistent(result)
    for name, snap in result.sessions.items():
        progress = snap.progress
        assert progress.ticks_processed + progress.ticks_rejected == result.published, name
        assert progress.candles_closed == reference.sessions[name].progress.candles_closed
        assert len(snap.broker_orders) == len(set(snap.broker_orders)) == snap.broker_seq, name
    diffs = differences(result, reference)
    assert not diffs, "\n".join(diffs)


def test_a_fill_waits_until_its_session_has_recorded_the_order(
    redis_url: str, tmp_path: Path
) -> None:
    """The crash window of a tick step, played in order: the step wrote the order row and
    queued the send, then died before its state write. The broker fills the order; the fill
    must wait (not count the position twice when the step is re-run) until the re-run records
    the same order; then it is applied exactly once. An order no re-run ever records (its
    row older than the wait) is applied anyway."""
    with Fleet(redis_url, tmp_path / "run") as rig:
        (name,) = rig.create_sessions(DEFAULT_PLANS[:1])
        session_id = rig.session_ids[name]
        ticks = replay_ticks()[:40]
        rig.publisher().publish(CONTRACT, ticks)
        rt = Runtime(rig.settings)
        decided = ticks[4].time
        first = _working(session_id, 1, decided)
        insert_order_if_absent(rig.engine, session_id, first, decided, "day")

        with pytest.raises(RetryLater, match="waits for session"):
            send_order(rt, session_id, first.client_order_id)
        waiting = rig.store.load(session_id)
        assert waiting.open_position == OpenPosition(CONTRACT)
        assert waiting.trades == ()
        assert rig.sql_orders()[0].status == "new"
        assert rig.broker_positions("ACC-SMA") == {CONTRACT: 1}

        with rig.store.locked(session_id) as lease:
            rig.store.write(lease, StateChanges.of({"orders": {first.client_order_id: first}}))
        outcome = send_order(rt, session_id, first.client_order_id)
        assert outcome.duplicate and outcome.fills_applied == 1
        applied = rig.store.load(session_id)
        assert applied.open_position is not None and applied.open_position.quantity == 1
        assert applied.orders == {}
        assert [t.client_order_id for t in applied.trades] == [first.client_order_id]
        assert send_order(rt, session_id, first.client_order_id).fills_applied == 0

        second = _working(session_id, 2, decided)
        insert_order_if_absent(rig.engine, session_id, second, decided, "day")
        long_ago = datetime.now(UTC) - timedelta(seconds=UNRECORDED_FILL_WAIT_S + 1)
        with Session(rig.engine) as db, db.begin():
            db.execute(
                update(OrderRow)
                .where(OrderRow.client_order_id == second.client_order_id)
                .values(created_at=long_ago)
            )
        assert send_order(rt, session_id, second.client_order_id).fills_applied == 1
        final = rig.store.load(session_id)
        assert final.open_position is not None and final.open_position.quantity == 2
        assert rig.broker_positions("ACC-SMA") == {CONTRACT: 2}
        assert [row.status for row in rig.sql_orders()] == ["filled", "filled"]


def _working(session_id: str, seq: int, decided: datetime) -> WorkingOrder:
    return WorkingOrder(
        client_order_id=client_order_id(session_id, seq, 0),
        contract=CONTRACT,
        side="buy",
        quantity=1,
        order_type="market",
        intent="entry",
        status="new",
        created_at=decided,
    )
