"""Sends lost with their worker's host (``workers.orders.sweep``).

A worker holding a send (the test-only pause ``send_test_pause``: the task holds its order's send
lease and has not sent) dies with every process of its host, the visibility timeout left at its
default (an hour): the message does not come back within the test, and beat's send sweep sends
the order, after the session's earlier ``new`` row, once each, within a minute. Without workers:
which rows the sweep takes (stale, no send lease on the session, no roll order) and how often.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from models.tables import OrderRow
from tests.kit.desk import QUIET
from tests.kit.fleet import CONTRACT, Fleet
from tests.kit.replay import replay_ticks
from tests.kit.wait import wait_until
from tests.kit.workers import unacked_headers
from workers.db.order_rows import get_order_row
from workers.dispatch.names import ORDERS_SEND
from workers.orders.send import FINAL
from workers.orders.sweep import (
    PAUSED_KEY,
    SWEEP_MAX_TRIES,
    sending_key,
    stalled_sends,
    sweep_sends,
)

pytestmark = pytest.mark.integration

ACCOUNT = "ACC-SEND"
WITHIN_S = 60.0


def row_status(rig: Fleet, coid: str) -> str:
    row = get_order_row(rig.engine, coid)
    assert row is not None
    return row.status


def test_a_host_killed_holding_a_send_the_sweep_sends_its_orders_once_in_order(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path / "run") as rig:
        sid = rig.create("sender", ACCOUNT, QUIET)
        worker = rig.start_worker(concurrency=2, env={"TRADEFLEET_SEND_TEST_PAUSE": "1"})
        rig.start_beat()
        rig.publish_replay(replay_ticks()[:400])
        rig.wait_read()
        first = rig.local_order(sid, "sweep-entry-1", status="new").client_order_id
        second = rig.local_order(sid, "sweep-entry-2", status="new").client_order_id
        rig.app.send_task(ORDERS_SEND, args=[sid, second], queue=rig.settings.queues.orders)
        wait_until(
            lambda: rig.client.exists(PAUSED_KEY.format(coid=second)),
            timeout=30,
            interval=0.05,
            what="the send to pause",
        )
        assert rig.broker_orders(ACCOUNT) == ()
        worker.kill()
        worker.wait_exit()
        died = time.monotonic()
        rig.start_worker()

        wait_until(
            lambda: row_status(rig, first) in FINAL and row_status(rig, second) in FINAL,
            timeout=WITHIN_S - (time.monotonic() - died),
            interval=0.1,
            what="both orders to reach the broker",
        )
        rows = {coid: get_order_row(rig.engine, coid) for coid in (first, second)}
        assert [(r.status, r.broker_order_id) for r in rows.values() if r is not None] == [
            ("filled", f"PB-{ACCOUNT}-1"),
            ("filled", f"PB-{ACCOUNT}-2"),
        ], "each placed once, the earlier row first"
        assert rig.broker_orders(ACCOUNT) == (first, second)
        assert rig.broker_seq(ACCOUNT) == 2
        assert rig.broker_positions(ACCOUNT) == {CONTRACT: 2}
        wait_until(lambda: rig.quantity(sid) == 2, timeout=10, what="the session to hold 2")
        assert rig.state(sid).orders == {}
        held = unacked_headers(rig.client, ORDERS_SEND)
        assert any(second in h.get("argsrepr", "") for h in held), "the dead host still holds it"
        swept = [e for e in rig.events(sid, "recovery") if second in e.message]
        assert swept and "queued again" in swept[0].message


def _age(rig: Fleet, coid: str, seconds: float) -> None:
    with Session(rig.engine) as db, db.begin():
        when = datetime.now(UTC) - timedelta(seconds=seconds)
        db.execute(update(OrderRow).where(OrderRow.client_order_id == coid).values(created_at=when))


def test_the_sweep_takes_the_newest_stale_row_of_a_session_nobody_is_sending(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path / "run") as rig:
        quiet, busy = rig.create("quiet", "ACC-Q", QUIET), rig.create("busy", "ACC-B", QUIET)
        for coid in ("q-1", "q-2", "q-3"):
            rig.local_order(quiet, coid, status="new", working_copy=False)
        rig.local_order(quiet, "roll-9-close", status="new", working_copy=False)
        rig.local_order(quiet, "q-sent", status="working", working_copy=False)
        for coid in ("b-1", "b-2"):
            rig.local_order(busy, coid, status="new", working_copy=False)
        now = datetime.now(UTC)
        stale = rig.settings.orders.send_stale_s
        assert stalled_sends(rig.engine, rig.client, now, stale) == [], "all written just now"

        for coid in ("q-1", "q-2", "roll-9-close", "q-sent", "b-1"):
            _age(rig, coid, stale + 1)
        rig.client.set(sending_key("b-2"), "a-live-send", ex=60)
        assert stalled_sends(rig.engine, rig.client, now, stale) == [(quiet, "q-2")], (
            "q-3 is fresh, a roll order is its chain's, busy has a send in progress"
        )
        rig.client.delete(sending_key("b-2"))
        assert stalled_sends(rig.engine, rig.client, now, stale) == [
            (quiet, "q-2"),
            (busy, "b-1"),
        ]

        queued: list[tuple[str, list[str]]] = []

        def send_task(name: str, args: list[str], queue: str) -> None:
            assert queue == rig.settings.queues.orders
            queued.append((name, args))

        for _ in range(SWEEP_MAX_TRIES + 2):
            sweep_sends(rig.engine, rig.client, rig.settings, send_task, now)
        assert queued.count((ORDERS_SEND, [quiet, "q-2"])) == SWEEP_MAX_TRIES
        assert queued.count((ORDERS_SEND, [busy, "b-1"])) == SWEEP_MAX_TRIES
        events = [e for e in rig.events(quiet, "recovery") if "q-2" in e.message]
        assert len(events) == SWEEP_MAX_TRIES
        assert [e.severity for e in events][-1] == "error"
        assert "for the last time" in events[-1].message
