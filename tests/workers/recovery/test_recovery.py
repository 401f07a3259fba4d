"""Recovery of lost session state, with real Redis, SQLite, the paper broker (db 1), real worker
and beat processes and the real replay of ESZ13.

In the middle of a replay the sessions' Redis state is lost (every ``tf:{<sid>}:*`` key deleted;
or every ``tf:*`` key, the sessions' whole world, while the paper broker in db 1 survives).
The sessions are rebuilt (by the worker that meets them, or by ``tradefleet recover``): position,
open orders and balance match the broker, no client order id is ever sent twice or reused, the
candles are re-warmed so the strategy runs again, the sessions trade to the end of the replay,
and a recovery event says what was rebuilt.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import FillRow, OrderRow
from tests.kit.cli import run_cli
from tests.kit.fleet import CONTRACT, Fleet
from tests.kit.paper import paper, place
from tests.kit.replay import DEFAULT_PLANS, replay_ticks
from tests.kit.snapshots import needed_stop, reduce_coid, seq_leg, text
from tests.kit.wait import wait_until
from trading.intents import client_order_id
from trading.positions import apply_fill
from trading.stops import attached_stop_id
from workers.brokers.commands import QueryBalance, QueryOpenOrders, QueryPositions
from workers.db.order_rows import get_order_row
from workers.dispatch.names import RECOVER
from workers.orders.fills import deliver_fills
from workers.reconcile.schedule import fan_out
from workers.recovery.recover import RecoveryReport, recover_session
from workers.risk.accounts import AccountChange, set_account
from workers.risk.book import RiskBook
from workers.runtime import Runtime
from workers.stops.sync import is_stop_id
from workers.ticks.snapshots import load_snapshot

pytestmark = pytest.mark.integration

FIRST_PART = 2_400
"""Ticks published before the loss (the replay day has about 5,500)."""
MEETING_PART = 300
"""Ticks published right after the loss: the sessions are met without state."""
QUIET = {"reconcile_positions_interval_s": 600.0, "reconcile_orders_interval_s": 600.0}
STOPS = pytest.mark.parametrize("protective_stops", [False, True], ids=["stops-off", "stops-on"])
"""The sessions lose their state with protective stops at the broker off, and on."""


def drop_session_keys(client: redis.Redis, session_id: str) -> int:
    """DEL every ``tf:{<sid>}:*`` key: state, candles, trades, lock and fence."""
    keys = list(client.scan_iter(match=f"tf:{{{session_id}}}:*", count=1_000))
    assert keys
    return int(cast(int, client.delete(*keys)))


def drop_every_tf_key(client: redis.Redis) -> int:
    """The sessions' whole Redis world (states, ready set, fill cursors, guards...) lost."""
    keys = list(client.scan_iter(match="tf:*", count=1_000))
    return int(cast(int, client.delete(*keys)))


def broker_truth(rig: Fleet, account: str) -> tuple[int, Decimal | None, Decimal]:
    broker = paper(Runtime(rig.settings), account)
    quantity = broker.positions(QueryPositions(account)).get(CONTRACT, 0)
    average = broker.average_prices(QueryPositions(account)).get(CONTRACT) if quantity else None
    return quantity, average, broker.balance(QueryBalance(account)).cash


def lose_in_the_middle(rig: Fleet) -> dict[str, tuple[int, Decimal | None, Decimal, int]]:
    """Replay up to FIRST_PART, settle, and note per session what the broker holds and the
    signal sequence reached; each session has snapshotted its strategy state by then."""
    rig.publish_replay(replay_ticks()[:FIRST_PART])
    rig.wait_settled()
    before = {}
    for name, sid in rig.session_ids.items():
        assert load_snapshot(rig.engine, sid) is not None
        quantity, average, cash = broker_truth(rig, rig.accounts[name])
        before[name] = (quantity, average, cash, rig.progress(name).signal_seq)
    assert any(rig.sql_orders(name) for name in rig.session_ids), "nothing traded before"
    return before


def after_stops(
    rig: Fleet, name: str, held: tuple[int, Decimal | None, Decimal], closed: list[str]
) -> tuple[int, Decimal | None, Decimal]:
    """What the broker ``held`` at the loss, once the protective stops the recovery ``closed``
    have filled (worked on the ticks the session met without state): their recorded fills
    applied as the broker applies them (cash moves by the realized P&L less commission)."""
    quantity, average, cash = held
    multiplier = rig.store.load(rig.session_ids[name]).contract_details.multiplier
    with Session(rig.engine) as db:
        for coid in closed:
            order = db.scalars(select(OrderRow).where(OrderRow.client_order_id == coid)).one()
            (fill,) = db.scalars(select(FillRow).where(FillRow.order_id == order.id)).all()
            signed = fill.quantity if order.side == "buy" else -fill.quantity
            change = apply_fill(quantity, average, signed, fill.price, multiplier)
            quantity, average = change.quantity, change.average_price
            cash += change.realized - fill.commission
    return quantity, average, cash


def check_recovery_event(rig: Fleet, name: str, before: tuple[Any, ...]) -> int:
    """The event matches what the broker held at the loss, after the protective stops touched
    while the session had no state (with stops on); returns the sequence recovered."""
    (event,) = rig.events(rig.session_ids[name], "recovery")
    details = event.details
    closed = details["stops_closed"]
    assert closed == [] or rig.settings.stops.protective, closed
    assert all(is_stop_id(coid) for coid in closed)
    statuses = {row.client_order_id: row.status for row in rig.sql_orders(name)}
    assert all(statuses[coid] == "filled" for coid in closed), closed
    quantity, average, cash = after_stops(rig, name, before[:3], closed)
    seq = before[3]
    assert event.severity == "warning"
    assert details["position"] == quantity
    if quantity:
        assert Decimal(details["average_price"]) == average
    assert Decimal(details["balance"]) == cash
    assert details["orders"] == []
    assert details["signal_seq"] == seq
    assert details["snapshot_age_s"] is not None
    warmup = rig.store.load(rig.session_ids[name]).warmup_periods
    assert details["candles"] >= warmup + 1, details
    return int(details["signal_seq"])


def check_final(rig: Fleet, name: str, recovered_seq: int) -> None:
    """After the replay: the session agrees with the broker, every order was sent once under
    its own client id, and the strategy decided new orders after the recovery."""
    sid, account = rig.session_ids[name], rig.accounts[name]
    state = rig.store.load(sid)
    quantity, average, cash = broker_truth(rig, account)
    position = state.open_position
    assert position is not None and position.quantity == quantity
    if quantity:
        assert position.average_price == average
    assert state.account_balance == cash
    assert state.orders == {}
    resting = paper(Runtime(rig.settings), account).open_orders(QueryOpenOrders(account))
    stops = [(o.side, o.quantity, o.stop_price) for o in resting if is_stop_id(o.client_order_id)]
    assert len(stops) == len(resting), "only protective stops may rest at the end"
    assert stops == needed_stop(position), (stops, position)
    protects = rig.settings.stops.protective and any(
        is_stop_id(c) for c in rig.broker_orders(account)
    )
    if protects and quantity:
        assert stops, f"{name} holds {quantity} unprotected"
    rows = rig.sql_orders(name)
    coids = [row.client_order_id for row in rows]
    assert len(coids) == len(set(coids))
    held = rig.broker_orders(account)
    assert sorted(coids) == sorted(held)
    seq_counter = int(cast(bytes, rig.broker_client.get(f"paper:acct:{account}:seq") or b"0"))
    assert seq_counter == len(rows), "the broker created an order twice"
    for row in rows:
        raw = cast(
            dict[bytes, bytes],
            rig.broker_client.hgetall(f"paper:acct:{account}:order:{row.client_order_id}"),
        )
        fields = {text(k): text(v) for k, v in raw.items()}
        assert (fields["side"], int(fields["quantity"])) == (row.side, row.quantity)
        assert row.decided_at is not None
        assert datetime.fromisoformat(fields["decided_at"]) == row.decided_at.astimezone(UTC)
    later = [
        row for row in rows if seq_leg(reduce_coid(sid, row.client_order_id))[0] > recovered_seq
    ]
    assert later, f"{name} decided nothing after its recovery"
    with Session(rig.engine) as db:
        fills = db.execute(
            select(FillRow.quantity, OrderRow.side)
            .join(OrderRow, FillRow.order_id == OrderRow.id)
            .where(OrderRow.session_id == sid)
        ).all()
    assert sum(q if side == "buy" else -q for q, side in fills) == quantity


@STOPS
def test_deleted_session_keys_are_recovered_by_the_worker_that_meets_them(
    redis_url: str, tmp_path: Path, protective_stops: bool
) -> None:
    overrides = {**QUIET, "protective_stops": protective_stops}
    with Fleet(redis_url, tmp_path, sweep_interval_s=1.0, **overrides) as rig:
        rig.create_sessions(DEFAULT_PLANS)
        queues = ("ticks", "orders", "reconcile")
        rig.start_worker(queues=queues, concurrency=3)
        rig.start_beat()
        before = lose_in_the_middle(rig)
        fences = {}
        for sid in rig.session_ids.values():
            fences[sid] = int(cast(bytes, rig.client.get(f"tf:{{{sid}}}:fence")))
            drop_session_keys(rig.client, sid)
        assert all(not rig.store.exists(sid) for sid in rig.session_ids.values())
        ticks = replay_ticks()
        rig.publish_replay(ticks[FIRST_PART : FIRST_PART + MEETING_PART])
        wait_until(
            lambda: all(rig.events(sid, "recovery") for sid in rig.session_ids.values()),
            timeout=30,
            interval=0.1,
            what="both sessions recovered",
        )
        seqs = {name: check_recovery_event(rig, name, before[name]) for name in rig.session_ids}
        for sid, fence in fences.items():
            assert int(cast(bytes, rig.client.get(f"tf:{{{sid}}}:fence"))) > fence
        rig.publish_replay(ticks[FIRST_PART + MEETING_PART :])
        rig.wait_settled()
        for name in rig.session_ids:
            check_final(rig, name, seqs[name])
            assert len(rig.events(rig.session_ids[name], "recovery")) == 1


def test_a_lost_redis_world_is_recovered_by_the_cli_and_the_broker_survives(
    redis_url: str, tmp_path: Path
) -> None:
    overrides = {**QUIET, "protective_stops": True}
    with Fleet(redis_url, tmp_path, sweep_interval_s=1.0, **overrides) as rig:
        rig.create_sessions(DEFAULT_PLANS)
        rig.start_worker(queues=("ticks", "orders"), concurrency=2)
        rig.start_beat()
        before = lose_in_the_middle(rig)
        book, account = RiskBook(rig.client, rig.settings.risk), rig.accounts["sma-fast"]
        set_account(rig.engine, book, account, AccountChange(max_daily_loss=Decimal("1000000")))
        broker_keys = rig.broker_client.dbsize()
        assert drop_every_tf_key(rig.client) > 0
        assert book.read(account).max_daily_loss is None
        assert rig.broker_client.dbsize() == broker_keys
        ticks = replay_ticks()
        rig.publish_replay(ticks[FIRST_PART : FIRST_PART + MEETING_PART])
        env = rig.cli_env()
        result = run_cli(env, "recover").ok()
        lines = result.stdout.splitlines()
        assert sorted(line.split(":")[0] for line in lines) == sorted(rig.session_ids.values())
        assert all(": recovered: state rebuilt: position " in line for line in lines), lines
        seqs = {name: check_recovery_event(rig, name, before[name]) for name in rig.session_ids}
        assert book.read(account).max_daily_loss == Decimal("1000000"), "levels from SQL"
        assert run_cli(env, "recover").ok().stdout == "no session needs recovery\n"
        sid = rig.session_ids["sma-fast"]
        again = run_cli(env, "recover", "--session", sid).ok().stdout
        assert again == f"{sid}: present: state present; nothing to do\n"
        run_cli(env, "recover", "--session", "no-such-session").refused("no-such-session")
        rig.publish_replay(ticks[FIRST_PART + MEETING_PART :])
        rig.wait_settled()
        for name in rig.session_ids:
            check_final(rig, name, seqs[name])


def test_the_positions_fan_out_queues_a_recovery_and_two_recoveries_rebuild_once(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path) as rig:
        (plan,) = DEFAULT_PLANS[:1]
        sid = rig.create_sessions([plan])[plan.name]
        rig.publish_replay(replay_ticks()[:50])
        drop_session_keys(rig.client, sid)
        rt = Runtime(rig.settings)
        sent: list[tuple[str, list[str]]] = []

        def send(name: str, args: list[str], **_: Any) -> None:
            sent.append((name, args))

        fan_out(rt, "positions", 1_000.0, "tok", send)
        assert sent == [(RECOVER, [sid])]
        fan_out(rt, "positions", 2_000.0, "tok", send)
        assert sent == [(RECOVER, [sid])], "queued twice within its guard"
        reports: list[RecoveryReport] = []
        barrier = threading.Barrier(4)

        def recover() -> None:
            own = Runtime(rig.settings)
            barrier.wait()
            reports.append(recover_session(own, sid))

        threads = [threading.Thread(target=recover) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        outcomes = sorted(report.outcome for report in reports)
        assert outcomes.count("recovered") == 1, outcomes
        assert set(outcomes) <= {"recovered", "busy", "present"}
        assert len(rig.events(sid, "recovery")) == 1
        state = rig.store.load(sid)
        assert state.open_position is not None and state.open_position.quantity == 0
        assert rig.field(plan.name, "_cursor") == rig.last_id()


def test_orders_and_fills_of_the_time_without_state_are_rebuilt_from_the_broker(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path) as rig:
        (plan,) = DEFAULT_PLANS[:1]
        sid = rig.create_sessions([plan])[plan.name]
        account = plan.account
        rig.publish_replay(replay_ticks()[:50])
        rt = Runtime(rig.settings)
        broker = paper(rt, account)
        groups = rig.settings.risk, rig.settings.stops  # what the fill path is given
        filled, resting, unsent = (client_order_id(sid, seq, 0) for seq in (1, 2, 3))
        rig.local_order(sid, filled, status="sent", working_copy=False)
        rig.local_order(sid, resting, order_type="limit", limit="1000.00", working_copy=False)
        rig.local_order(sid, unsent, status="new", working_copy=False)
        assert place(broker, account, sid, filled) == "filled"
        assert place(broker, account, sid, resting, order_type="limit", limit="1000.00") == (
            "working"
        )
        drop_session_keys(rig.client, sid)
        assert deliver_fills(rt.redis, rt.store, rt.engine, broker, account, *groups) == 0
        report = recover_session(rt, sid)
        assert report.outcome == "recovered", report.line()
        assert report.details["fills_recorded"] == 1
        state = rig.store.load(sid)
        quantity, average, cash = broker_truth(rig, account)
        assert quantity == 1
        assert state.open_position is not None
        assert (state.open_position.quantity, state.open_position.average_price) == (1, average)
        assert state.account_balance == cash
        assert {coid: o.status for coid, o in state.orders.items()} == {
            resting: "working",
            unsent: "new",
        }
        assert [t.client_order_id for t in state.trades] == [filled]
        assert rig.progress(plan.name).signal_seq == 3
        assert {row.client_order_id: row.status for row in rig.sql_orders(plan.name)} == {
            filled: "filled",
            resting: "working",
            unsent: "new",
        }
        log_end = broker.fills_since(account, "")[1]
        assert rig.reconcile_meta(sid).absorbed_cursor == log_end
        assert deliver_fills(rt.redis, rt.store, rt.engine, broker, account, *groups) == 0
        assert rig.quantity(sid) == 1, "a fill from before the recovery counted twice"


@pytest.mark.parametrize("touched", [False, True], ids=["resting", "touched-without-state"])
def test_a_rebuilt_position_keeps_its_stop_and_a_stop_touched_without_state_has_filled(
    redis_url: str, tmp_path: Path, touched: bool
) -> None:
    """A short with its buy stop resting; the session loses its state and meets ticks without
    it (above 1676.75 only after the loss). Rebuilt, the position keeps the price of its stop
    (the step watches it again) and the stop keeps resting; or, when those ticks reached the
    stop, the broker filled it on them before the position was read: the session is flat."""
    with Fleet(redis_url, tmp_path, protective_stops=True) as rig:
        (plan,) = DEFAULT_PLANS[:1]
        sid, account = rig.create_sessions([plan])[plan.name], plan.account
        ticks = replay_ticks()
        assert (
            max(t.price for t in ticks[:50])
            < Decimal("1677.00")
            <= max(t.price for t in ticks[50:300])
        )
        rig.publish_replay(ticks[:50])
        rt = Runtime(rig.settings)
        broker = paper(rt, account)
        entry = client_order_id(sid, 1, 0)
        rig.local_order(sid, entry, side="sell", status="sent", working_copy=False)
        assert place(broker, account, sid, entry, side="sell") == "filled"
        price = Decimal("1677.00") if touched else Decimal("1700.00")
        stop = attached_stop_id(entry)
        rig.local_order(sid, stop, "buy", "stop", stop=str(price), working_copy=False)
        assert place(broker, account, sid, stop, "buy", "stop", stop=str(price)) == "working"
        drop_session_keys(rig.client, sid)
        rig.publish_replay(ticks[50:300])
        report = recover_session(rt, sid)
        assert report.outcome == "recovered", report.line()
        state = rig.store.load(sid)
        quantity, _, cash = broker_truth(rig, account)
        assert state.open_position is not None
        assert state.open_position.quantity == quantity == (0 if touched else -1)
        assert state.account_balance == cash
        row = get_order_row(rig.engine, stop)
        assert row is not None
        resting = [o.client_order_id for o in broker.open_orders(QueryOpenOrders(account))]
        if touched:
            assert report.details["stops_closed"] == [stop]
            assert row.status == "filled"
            assert state.open_position.stop_price is None
            assert resting == []
            (fill,) = [t for t in state.trades if t.client_order_id == stop]
            assert fill.time > ticks[49].time and fill.price >= price
        else:
            assert report.details["stops_closed"] == []
            assert row.status == "working"
            assert state.open_position.stop_price == price
            assert Decimal(report.details["stop_price"]) == price
            assert report.details["stop_resting"] == stop
            assert resting == [stop]
        assert rig.progress(plan.name).stops_out == ()
        assert rig.field(plan.name, "_cursor") == rig.last_id()
