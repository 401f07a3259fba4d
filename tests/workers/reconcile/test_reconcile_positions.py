"""Positions reconciliation with real Redis, SQLite, the paper broker, a real worker and beat:
a fill booked behind a session's back is corrected within one cycle; the CLI prints the
correction and ``session show`` agrees with the broker; a failing broker never flattens a
session and after N failures its entries are blocked (the tick path drops them); a fill that
arrives around a correction is counted once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.state import WorkingOrder
from models.tables import FillRow, OrderRow
from tests.conftest import free_port, wait_until
from tests.integration.reconcile_rig import (
    CONTRACT,
    T0,
    create,
    local_order,
    make_rig,
    meta,
    paper,
    place,
    quantity,
    reconciliation_events,
    runtime_for,
    set_position,
    state,
)
from tests.kit import workers as worker_fixtures
from tests.kit.cli import cli_env, run_cli
from tests.kit.fleet import TickPathRig, replay_ticks
from tests.kit.workers import WorkerFactory
from workers.brokers.commands import QueryBalance
from workers.orders.fills import apply_fill_to_session, deliver_fills
from workers.reconcile.position_check import reconcile_positions
from workers.reconcile.schedule import STATS_KEY
from workers.state.store import StateChanges

pytestmark = pytest.mark.integration

start_worker = worker_fixtures.start_worker
INTERVAL_S = 1.0


def test_a_fill_behind_the_sessions_back_is_corrected_within_one_cycle(
    start_worker: WorkerFactory, redis_url: str, tmp_path: Path
) -> None:
    with make_rig(
        redis_url, tmp_path, reconcile_positions_interval_s=INTERVAL_S, reconcile_grace_s=0.5
    ) as rig:
        sid = create(rig, "drift", "ACC-DRIFT")
        start_worker(redis_url, queues=("reconcile",), concurrency=2, env=rig.worker_env())
        rig.start_beat()
        wait_until(lambda: meta(rig, sid).checks >= 1, timeout=30, what="a first pass by beat")
        assert int(rig.client.hget(STATS_KEY, "positions:won") or 0) >= 1
        assert quantity(rig, sid) == 0
        rt = runtime_for(rig.settings)
        broker = paper(rt, "ACC-DRIFT")
        broker.book_external_fill("ACC-DRIFT", CONTRACT, 2, Decimal("1680.25"), datetime.now(UTC))
        booked = time.monotonic()
        wait_until(lambda: quantity(rig, sid) == 2, timeout=3 * INTERVAL_S + 5, what="correction")
        took = time.monotonic() - booked
        held = state(rig, sid)
        cash = broker.balance(QueryBalance("ACC-DRIFT")).cash
    assert took < 2 * INTERVAL_S + 2, f"corrected after {took:.1f}s"
    assert held.open_position is not None
    assert held.open_position.average_price == Decimal("1680.25")
    assert held.account_balance == cash == Decimal("99995.00")
    (event,) = reconciliation_events(rig, sid)
    assert (event.severity, event.message) == ("warning", "position corrected from 0 to 2")
    assert event.details["local"] == 0 and event.details["broker"] == 2
    assert "broker holds 2" in event.details["reason"]


def test_cli_reconcile_now_prints_the_correction_and_session_show_agrees(
    redis_url: str, tmp_path: Path
) -> None:
    with make_rig(redis_url, tmp_path) as rig:
        sid = create(rig, "cli-drift", "ACC-CLI")
        env = cli_env(redis_url, rig.database_url, rig.paper_url)
        booked = run_cli(
            env,
            "broker",
            "paper",
            "fill",
            "--account",
            "ACC-CLI",
            "--contract",
            "esz13",
            "--qty",
            "-3",
            "--price",
            "1679.50",
        ).ok()
        assert "ESZ13 -3 @ 1679.50; broker position now -3" in booked.stdout
        first = run_cli(env, "reconcile", "positions", "--now").ok()
        assert first.stdout.strip() == f"{sid}: corrected from 0 to -3"
        shown = json.loads(run_cli(env, "session", "show", sid, "--json").ok().stdout)
        assert shown["open_position"]["quantity"] == -3
        assert shown["open_position"]["average_price"] == "1679.50"
        again = run_cli(env, "reconcile", "positions", "--session", sid, "--now").ok()
        assert again.stdout.strip() == f"{sid}: in sync (-3)"
        listed = json.loads(
            run_cli(env, "events", "--session", sid, "--kind", "reconciliation", "--json")
            .ok()
            .stdout
        )
        assert [e["message"] for e in listed] == ["position corrected from 0 to -3"]
        assert listed[0]["details"]["broker"] == -3
        text = run_cli(env, "events").ok().stdout
        assert "position corrected from 0 to -3" in text
        orders = run_cli(env, "reconcile", "orders", "--now").ok()
        assert orders.stdout.strip() == f"{sid}: in sync (0 open)"
        run_cli(
            env,
            "broker",
            "paper",
            "fill",
            "--account",
            "ACC-CLI",
            "--contract",
            "ESZ13",
            "--qty",
            "0",
            "--price",
            "1",
        ).refused("quantity")
        run_cli(
            env,
            "broker",
            "paper",
            "fill",
            "--account",
            "ACC-CLI",
            "--contract",
            "ESZ13",
            "--qty",
            "1",
            "--price",
            "abc",
        ).refused("--price")
        run_cli(
            env,
            "broker",
            "paper",
            "fill",
            "--account",
            "ACC-CLI",
            "--contract",
            "XXZ13",
            "--qty",
            "1",
            "--price",
            "1",
        ).refused("XX")
        run_cli(env, "events", "--kind", "nope").refused("unknown event kind")
        run_cli(env, "reconcile", "positions", "--session", "nope", "--now").refused("nope")
        assert quantity(rig, sid) == -3


def test_a_failing_broker_never_flattens_a_session_and_blocks_its_entries(
    start_worker: WorkerFactory, redis_url: str, tmp_path: Path
) -> None:
    with make_rig(
        redis_url,
        tmp_path,
        reconcile_positions_interval_s=INTERVAL_S,
        reconcile_max_failures=3,
        reconcile_rechecks=0,
    ) as rig:
        sid = create(rig, "blind", "ACC-BLIND")
        set_position(rig, sid, 1, "1680.00")
        dead_broker = f"redis://127.0.0.1:{free_port()}/1"
        env = {**rig.worker_env(), "TRADEFLEET_PAPER_BROKER_URL": dead_broker}
        start_worker(redis_url, queues=("reconcile", "ticks", "orders"), concurrency=2, env=env)
        rig.start_beat()
        seen: set[int] = set()

        def blocked() -> bool:
            seen.add(quantity(rig, sid))
            return meta(rig, sid).entries_blocked

        wait_until(blocked, timeout=30, interval=0.05, what="entries blocked")
        record = meta(rig, sid)
        assert record.stale and record.failures >= 3 and "ServiceUnavailable" in record.last_error
        messages = [(e.severity, e.message) for e in reconciliation_events(rig, sid)]
        assert messages[:2] == [
            ("warning", "broker did not answer; position left as is"),
            ("error", "entries blocked after 3 consecutive broker failures"),
        ]
        rig.publish_replay(replay_ticks())
        wait_until(lambda: rig.field("blind", "_cursor") == rig.last_id(), timeout=60)
        seen.add(quantity(rig, sid))
        assert rig.progress("blind").candles_closed > 30
        intents = [row.intent for row in rig.sql_orders("blind")]
        assert meta(rig, sid).entries_blocked

        healed = reconcile_positions(runtime_for(rig.settings), sid)
        after = meta(rig, sid)
    assert seen == {1}, f"the position moved while the broker was out: {seen}"
    assert intents == ["exit"], intents
    assert healed.outcome == "recheck", healed.line()
    assert not after.entries_blocked and not after.stale and after.failures == 0
    last = reconciliation_events(rig, sid)[-1]
    assert (last.severity, last.message) == ("info", "broker answers again; entries allowed")


def test_a_fill_around_a_correction_is_counted_once(redis_url: str, tmp_path: Path) -> None:
    with make_rig(redis_url, tmp_path, reconcile_grace_s=0.2) as rig:
        sid = create(rig, "twice", "ACC-TWICE")
        rig.publish_replay(replay_ticks()[:50])
        rt = runtime_for(rig.settings)
        broker = paper(rt, "ACC-TWICE")

        # The session's own order filled at the broker; its fill not delivered yet.
        local_order(rig, sid, "own-1")
        assert place(broker, "ACC-TWICE", sid, "own-1") == "filled"
        first = reconcile_positions(rt, sid)
        assert first.line() == f"{sid}: in sync (1)"
        late = deliver_fills(rig.client, rig.store, rig.engine, broker, "ACC-TWICE")
        fills, _ = broker.fills_since("ACC-TWICE", "")
        again = [apply_fill_to_session(rig.store, rig.engine, broker, f) for f in fills]
        assert (late, again, quantity(rig, sid)) == (0, [False], 1)

        # A fill that cannot be delivered yet (its order is not in the state): never absorbed.
        local_order(rig, sid, "own-2", working_copy=False)
        assert place(broker, "ACC-TWICE", sid, "own-2") == "filled"
        time.sleep(0.3)
        held = reconcile_positions(rt, sid)
        assert held.outcome == "recheck" and quantity(rig, sid) == 1
        _record_working_copy(rig, sid, "own-2")  # the tick step's re-run records it
        assert deliver_fills(rig.client, rig.store, rig.engine, broker, "ACC-TWICE") == 1
        assert deliver_fills(rig.client, rig.store, rig.engine, broker, "ACC-TWICE") == 0
        final = reconcile_positions(rt, sid)
        trades = [t.execution_id for t in state(rig, sid).trades]
        with Session(rig.engine) as db:
            fill_rows = db.scalar(select(func.count()).select_from(FillRow))
            statuses = sorted(db.scalars(select(OrderRow.status)).all())
    assert final.line() == f"{sid}: in sync (2)"
    assert quantity(rig, sid) == 2
    assert len(trades) == len(set(trades)) == 2 == fill_rows
    assert statuses == ["filled", "filled"]
    assert reconciliation_events(rig, sid) == []


def _record_working_copy(rig: TickPathRig, session_id: str, coid: str) -> None:
    (row,) = [r for r in rig.sql_orders() if r.client_order_id == coid]
    order = WorkingOrder(
        client_order_id=coid,
        contract=row.contract,
        side=row.side,
        quantity=row.quantity,
        order_type=row.order_type,
        intent=row.intent,
        status="working",
        created_at=T0,
    )
    with rig.store.locked(session_id, wait_s=5) as lease:
        orders = {**lease.value("orders"), coid: order}
        rig.store.write(lease, StateChanges.of({"orders": orders}))
