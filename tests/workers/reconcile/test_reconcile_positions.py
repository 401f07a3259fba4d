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
from tests.kit.cli import run_cli
from tests.kit.fleet import CONTRACT, Fleet
from tests.kit.metrics import wait_counted
from tests.kit.paper import paper, place
from tests.kit.replay import first_tick_time, replay_ticks
from tests.kit.wait import wait_until
from workers.brokers.commands import QueryBalance
from workers.metrics.catalog import RECONCILE_CORRECTIONS, RECONCILE_LAST_SUCCESS
from workers.orders.fills import apply_fill_to_session, deliver_fills
from workers.reconcile.position_check import reconcile_positions
from workers.reconcile.schedule import STATS_KEY
from workers.runtime import Runtime
from workers.state.store import StateChanges
from workers.tools.bench.env import free_port

pytestmark = pytest.mark.integration

INTERVAL_S = 1.0


def test_a_fill_behind_the_sessions_back_is_corrected_within_one_cycle(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(
        redis_url, tmp_path, reconcile_positions_interval_s=INTERVAL_S, reconcile_grace_s=0.5
    ) as rig:
        sid = rig.create("drift", "ACC-DRIFT")
        rig.start_worker(queues=("reconcile",), concurrency=2)
        rig.start_beat()
        wait_until(
            lambda: rig.reconcile_meta(sid).checks >= 1, timeout=30, what="a first pass by beat"
        )
        assert int(rig.client.hget(STATS_KEY, "positions:won") or 0) >= 1
        assert rig.quantity(sid) == 0
        rt = Runtime(rig.settings)
        broker = paper(rt, "ACC-DRIFT")
        broker.book_external_fill("ACC-DRIFT", CONTRACT, 2, Decimal("1680.25"), datetime.now(UTC))
        booked = time.monotonic()
        wait_until(lambda: rig.quantity(sid) == 2, timeout=3 * INTERVAL_S + 5, what="correction")
        took = time.monotonic() - booked
        held = rig.state(sid)
        cash = broker.balance(QueryBalance("ACC-DRIFT")).cash
        wait_counted(rig.client, RECONCILE_CORRECTIONS, {"position": 1})
        checks = {field.decode() for field in rig.client.hkeys(RECONCILE_LAST_SUCCESS.key)}
    assert took < 2 * INTERVAL_S + 2, f"corrected after {took:.1f}s"
    assert held.open_position is not None
    assert held.open_position.average_price == Decimal("1680.25")
    assert held.account_balance == cash == Decimal("99995.00")
    assert "positions" in checks
    (event,) = rig.events(sid, "reconciliation")
    assert (event.severity, event.message) == ("warning", "position corrected from 0 to 2")
    assert event.details["local"] == 0 and event.details["broker"] == 2
    assert "broker holds 2" in event.details["reason"]


def test_cli_reconcile_now_prints_the_correction_and_session_show_agrees(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path) as rig:
        sid = rig.create("cli-drift", "ACC-CLI")
        env = rig.cli_env()
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
        asked = json.loads(
            run_cli(env, "events", "--session", sid, "--kind", "operator", "--json").ok().stdout
        )
        assert [e["message"].split(" (by ")[0] for e in asked] == [
            "positions reconciled: corrected",
            "positions reconciled: in_sync",
        ]
        assert all(e["details"]["user"].startswith("cli:") for e in asked)
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
        assert rig.quantity(sid) == -3


def test_a_failing_broker_never_flattens_a_session_and_blocks_its_entries(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(
        redis_url,
        tmp_path,
        reconcile_positions_interval_s=INTERVAL_S,
        reconcile_max_failures=3,
        reconcile_rechecks=0,
    ) as rig:
        sid = rig.create("blind", "ACC-BLIND")
        rig.set_position(sid, 1, "1680.00")
        dead_broker = f"redis://127.0.0.1:{free_port()}/1"
        rig.start_worker(
            queues=("reconcile", "ticks", "orders"),
            concurrency=2,
            env={"TRADEFLEET_PAPER_BROKER_URL": dead_broker},
        )
        rig.start_beat()
        seen: set[int] = set()

        def blocked() -> bool:
            seen.add(rig.quantity(sid))
            return rig.reconcile_meta(sid).entries_blocked

        wait_until(blocked, timeout=30, interval=0.05, what="entries blocked")
        record = rig.reconcile_meta(sid)
        assert record.stale and record.failures >= 3 and "ServiceUnavailable" in record.last_error
        expected = [
            ("warning", "broker did not answer; position left as is"),
            ("error", "entries blocked after 3 consecutive broker failures"),
        ]

        def messages() -> list[tuple[str, str]]:
            return [(e.severity, e.message) for e in rig.events(sid, "reconciliation")][:2]

        # the event is recorded right after the block is written in the session's state
        wait_until(lambda: len(messages()) == 2, timeout=10, what="the block's event")
        assert messages() == expected
        rig.publish_replay(replay_ticks())
        wait_until(lambda: rig.field("blind", "_cursor") == rig.last_id(), timeout=60)
        seen.add(rig.quantity(sid))
        assert rig.progress("blind").candles_closed > 30
        intents = [row.intent for row in rig.sql_orders("blind")]
        assert rig.reconcile_meta(sid).entries_blocked

        healed = reconcile_positions(Runtime(rig.settings), sid)
        after = rig.reconcile_meta(sid)
    assert seen == {1}, f"the position moved while the broker was out: {seen}"
    assert intents == ["exit"], intents
    assert healed.outcome == "recheck", healed.line()
    assert not after.entries_blocked and not after.stale and after.failures == 0
    last = rig.events(sid, "reconciliation")[-1]
    assert (last.severity, last.message) == ("info", "broker answers again; entries allowed")


def test_a_fill_around_a_correction_is_counted_once(redis_url: str, tmp_path: Path) -> None:
    with Fleet(redis_url, tmp_path, reconcile_grace_s=0.2) as rig:
        sid = rig.create("twice", "ACC-TWICE")
        rig.publish_replay(replay_ticks()[:50])
        rt = Runtime(rig.settings)
        broker = paper(rt, "ACC-TWICE")
        groups = rig.settings.risk, rig.settings.stops  # what the fill path is given

        # The session's own order filled at the broker; its fill not delivered yet.
        rig.local_order(sid, "own-1")
        assert place(broker, "ACC-TWICE", sid, "own-1") == "filled"
        first = reconcile_positions(rt, sid)
        assert first.line() == f"{sid}: in sync (1)"
        late = deliver_fills(rig.client, rig.store, rig.engine, broker, "ACC-TWICE", *groups)
        fills, _ = broker.fills_since("ACC-TWICE", "")
        again = [apply_fill_to_session(rig.store, rig.engine, broker, f, *groups) for f in fills]
        assert (late, again, rig.quantity(sid)) == (0, [False], 1)

        # A fill that cannot be delivered yet (its order is not in the state): never absorbed.
        rig.local_order(sid, "own-2", working_copy=False)
        assert place(broker, "ACC-TWICE", sid, "own-2") == "filled"
        time.sleep(0.3)
        held = reconcile_positions(rt, sid)
        assert held.outcome == "recheck" and rig.quantity(sid) == 1
        _record_working_copy(rig, sid, "own-2")  # the tick step's re-run records it
        assert deliver_fills(rig.client, rig.store, rig.engine, broker, "ACC-TWICE", *groups) == 1
        assert deliver_fills(rig.client, rig.store, rig.engine, broker, "ACC-TWICE", *groups) == 0
        final = reconcile_positions(rt, sid)
        trades = [t.execution_id for t in rig.state(sid).trades]
        with Session(rig.engine) as db:
            fill_rows = db.scalar(select(func.count()).select_from(FillRow))
            statuses = sorted(db.scalars(select(OrderRow.status)).all())
    assert final.line() == f"{sid}: in sync (2)"
    assert rig.quantity(sid) == 2
    assert len(trades) == len(set(trades)) == 2 == fill_rows
    assert statuses == ["filled", "filled"]
    assert rig.events(sid, "reconciliation") == []


def _record_working_copy(rig: Fleet, session_id: str, coid: str) -> None:
    (row,) = [r for r in rig.sql_orders() if r.client_order_id == coid]
    order = WorkingOrder(
        client_order_id=coid,
        contract=row.contract,
        side=row.side,
        quantity=row.quantity,
        order_type=row.order_type,
        intent=row.intent,
        status="working",
        created_at=first_tick_time(),
    )
    with rig.store.locked(session_id, wait_s=5) as lease:
        orders = {**lease.value("orders"), coid: order}
        rig.store.write(lease, StateChanges.of({"orders": orders}))
