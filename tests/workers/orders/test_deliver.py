"""``tradefleet.orders.deliver`` on a real Celery worker and the paper broker: an order of a
session filled at the broker is applied to the session once, however often deliver is sent;
an order the broker cancelled is recorded cancelled; the pending key is cleared as the task
starts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.tables import FillRow, OrderRow
from tests.kit.fleet import Fleet
from tests.kit.paper import paper, place
from tests.kit.replay import replay_ticks
from tests.kit.wait import wait_until
from workers.brokers.commands import CancelOrder, Fill
from workers.brokers.paper.broker import PaperBroker
from workers.dispatch.names import ORDERS_DELIVER
from workers.orders.deliver import pending_key
from workers.orders.fills import deliver_fills, fills_cursor_key
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

ACCOUNT = "ACC-DLV"


def fill_rows(rig: Fleet, coid: str) -> int:
    with Session(rig.engine) as db:
        query = (
            select(func.count())
            .select_from(FillRow)
            .join(OrderRow, FillRow.order_id == OrderRow.id)
            .where(OrderRow.client_order_id == coid)
        )
        return int(db.scalar(query) or 0)


def order_status(rig: Fleet, coid: str) -> str | None:
    with Session(rig.engine) as db:
        return db.scalar(select(OrderRow.status).where(OrderRow.client_order_id == coid))


def test_a_fill_is_applied_once_when_deliver_is_sent_twice(redis_url: str, tmp_path: Path) -> None:
    with Fleet(redis_url, tmp_path) as rig:
        sid = rig.create("deliver", ACCOUNT)
        rig.publish_replay(replay_ticks()[:20])
        broker = paper(Runtime(rig.settings), ACCOUNT)
        rig.local_order(sid, "dlv-filled")
        assert place(broker, ACCOUNT, sid, "dlv-filled") == "filled"
        rig.local_order(sid, "dlv-resting", order_type="limit", limit="1000")
        assert place(broker, ACCOUNT, sid, "dlv-resting", "buy", "limit", "1000") == "working"
        broker.cancel_order(CancelOrder(ACCOUNT, "dlv-resting"))
        assert rig.quantity(sid) == 0
        rig.start_worker(queues=("orders",))
        rig.client.set(pending_key(ACCOUNT), "1", ex=30)
        first = rig.app.send_task(ORDERS_DELIVER, args=[ACCOUNT], queue="orders")
        second = rig.app.send_task(ORDERS_DELIVER, args=[ACCOUNT], queue="orders")
        outcomes = [first.get(timeout=60), second.get(timeout=60)]
        wait_until(lambda: rig.quantity(sid) == 1, timeout=30, what="the fill applied")
        trades = rig.state(sid).trades
        assert rig.client.get(pending_key(ACCOUNT)) is None
        assert sum(o["fills_applied"] for o in outcomes) == 1
        assert [t.client_order_id for t in trades] == ["dlv-filled"]
        assert fill_rows(rig, "dlv-filled") == 1
        assert order_status(rig, "dlv-filled") == "filled"
        assert order_status(rig, "dlv-resting") == "cancelled"
        assert "dlv-resting" not in rig.state(sid).orders


def test_deliver_for_an_account_without_sessions_does_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path) as rig:
        rig.start_worker(queues=("orders",))
        outcome = rig.app.send_task(ORDERS_DELIVER, args=["NOBODY"], queue="orders")
        assert outcome.get(timeout=60) == {
            "sessions": 0,
            "fills_applied": 0,
            "orders_rechecked": 0,
        }


def test_fills_are_delivered_a_batch_at_a_time_until_one_is_not_whole(
    redis_url: str, tmp_path: Path
) -> None:
    """``deliver_fills`` asks the broker again only after a whole batch: three fills with a
    batch of two take two reads, and nothing is left behind."""
    with Fleet(redis_url, tmp_path) as rig:
        sid = rig.create("batches", ACCOUNT)
        rig.publish_replay(replay_ticks()[:20])
        rt = Runtime(rig.settings)
        broker = paper(rt, ACCOUNT)
        small = PaperBroker(rig.broker_client, rig.client, replace(broker.config, batch=2))
        for n in range(3):
            rig.local_order(sid, f"dlv-b{n}")
            assert place(small, ACCOUNT, sid, f"dlv-b{n}") == "filled"
        reads: list[str] = []
        fills_since = small.fills_since

        def counted(account: str, cursor: str) -> tuple[list[Fill], str]:
            reads.append(cursor)
            return fills_since(account, cursor)

        small.fills_since = counted  # type: ignore[method-assign]
        settings = rig.settings
        applied = deliver_fills(
            rig.client, rig.store, rig.engine, small, ACCOUNT, settings.risk, settings.stops
        )
        assert applied == 3 and len(reads) == 2, reads
        assert rig.quantity(sid) == 3
        assert [fill_rows(rig, f"dlv-b{n}") for n in range(3)] == [1, 1, 1]
        cursor = rig.client.get(fills_cursor_key(ACCOUNT))
        assert cursor is not None and small.fills_since(ACCOUNT, cursor.decode())[0] == []
