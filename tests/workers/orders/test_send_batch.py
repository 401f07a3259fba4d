"""A drain round's orders in one send task (``tradefleet.orders.send_batch``), run by a real
worker on the paper broker.

Every order of a batch is placed once, each session's in decision order. An order that must
wait (here: its fill is for an order its session has not recorded yet, ``RetryLater``) is queued
again alone, and so is every later order of its session in the batch, while the batch goes on
with the other sessions' orders; once the session records the order, both go out, in order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.desk import QUIET
from tests.kit.fleet import Fleet
from tests.kit.replay import replay_ticks
from tests.kit.wait import wait_until
from workers.db.order_rows import get_order_row
from workers.dispatch.names import ORDERS_SEND_BATCH
from workers.orders.send import FINAL
from workers.state.store import StateChanges

pytestmark = pytest.mark.integration

ACCOUNT_A, ACCOUNT_B = "ACC-BATCH-A", "ACC-BATCH-B"
RESULT_TIMEOUT_S = 30.0


def row_status(rig: Fleet, coid: str) -> str:
    row = get_order_row(rig.engine, coid)
    assert row is not None
    return row.status


def ready_fleet(rig: Fleet) -> tuple[str, str]:
    """Two quiet sessions on accounts of their own, a worker, and prices to fill at."""
    a, b = rig.create("a", ACCOUNT_A, QUIET), rig.create("b", ACCOUNT_B, QUIET)
    rig.start_worker()
    rig.publish_replay(replay_ticks()[:400])
    rig.wait_read()
    return a, b


def test_a_batch_places_each_order_once_and_each_sessions_in_decision_order(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path / "run") as rig:
        a, b = ready_fleet(rig)
        a1 = rig.local_order(a, "batch-a-1", status="new").client_order_id
        b1 = rig.local_order(b, "batch-b-1", status="new").client_order_id
        a2 = rig.local_order(a, "batch-a-2", status="new").client_order_id
        batch = [[a, a1], [b, b1], [a, a2]]
        result = rig.app.send_task(ORDERS_SEND_BATCH, args=[batch], queue="orders")

        assert result.get(timeout=RESULT_TIMEOUT_S) == ["filled", "filled", "filled"]
        assert [row_status(rig, coid) for coid in (a1, b1, a2)] == ["filled"] * 3
        assert rig.broker_orders(ACCOUNT_A) == (a1, a2)
        assert rig.broker_orders(ACCOUNT_B) == (b1,)
        assert (rig.broker_seq(ACCOUNT_A), rig.broker_seq(ACCOUNT_B)) == (2, 1)
        assert (rig.quantity(a), rig.quantity(b)) == (2, 1)
        assert rig.state(a).orders == {} and rig.state(b).orders == {}


def test_an_order_that_must_wait_goes_again_alone_with_its_sessions_later_ones(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path / "run") as rig:
        a, b = ready_fleet(rig)
        unrecorded = rig.local_order(a, "batch-x-1", status="new", working_copy=False)
        x1 = unrecorded.client_order_id
        x2 = rig.local_order(a, "batch-x-2", status="new").client_order_id
        b1 = rig.local_order(b, "batch-b-1", status="new").client_order_id
        batch = [[a, x1], [a, x2], [b, b1]]
        result = rig.app.send_task(ORDERS_SEND_BATCH, args=[batch], queue="orders")

        assert result.get(timeout=RESULT_TIMEOUT_S) == ["retry", "retry", "filled"], (
            "x1's fill waits for its session to record x1; x2 goes after x1; b's goes on"
        )
        assert row_status(rig, b1) == "filled" and rig.quantity(b) == 1
        assert row_status(rig, x1) == "new", "its fill is not applied yet"
        assert rig.quantity(a) == 0

        with rig.store.locked(a, wait_s=5) as lease:  # the re-run step records x1
            orders = {**lease.value("orders"), x1: unrecorded}
            rig.store.write(lease, StateChanges.of({"orders": orders}))
        wait_until(
            lambda: row_status(rig, x1) in FINAL and row_status(rig, x2) in FINAL,
            timeout=RESULT_TIMEOUT_S,
            interval=0.1,
            what="x1 and x2 to be sent again alone and filled",
        )
        assert [row_status(rig, coid) for coid in (x1, x2)] == ["filled", "filled"]
        assert rig.broker_orders(ACCOUNT_A) == (x1, x2), "each placed once, x1 first"
        assert rig.broker_seq(ACCOUNT_A) == 2
        wait_until(lambda: rig.quantity(a) == 2, timeout=10, what="session a to hold 2")
        assert rig.state(a).orders == {}
