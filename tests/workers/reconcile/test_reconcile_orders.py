"""Orders reconciliation through a real worker (real Redis, SQLite, the paper broker): filled
at the broker → missed fills applied; cancelled or rejected there → closed here; open there but
unknown here → adopted as external (or only flagged, by setting); open here but absent there →
one query, then lost."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import OrderRow
from tests.kit.fleet import Fleet
from tests.kit.metrics import counted, wait_counted
from tests.kit.paper import paper, place
from tests.kit.replay import first_tick_time, replay_ticks
from workers.brokers.commands import CancelOrder, QueryOpenOrders
from workers.dispatch.names import RECONCILE_ORDERS
from workers.metrics.catalog import (
    FILLS,
    ORDERS,
    RECONCILE_CORRECTIONS,
    RECONCILE_LAST_SUCCESS,
)
from workers.reconcile.order_check import reconcile_orders
from workers.risk.book import RiskBook
from workers.runtime import Runtime
from workers.ticks.publisher import epoch_ms

pytestmark = pytest.mark.integration

ACCOUNT = "ACC-ORD"


def rows(rig: Fleet) -> dict[str, tuple[str, bool]]:
    with Session(rig.engine) as db:
        found = db.scalars(select(OrderRow)).all()
        return {row.client_order_id: (row.status, row.external) for row in found}


def rejected_at_broker(rig: Fleet, session_id: str, coid: str) -> None:
    """An order the (outside) broker holds as rejected: written into the broker's own store."""
    rig.broker_client.hset(
        f"paper:acct:{ACCOUNT}:order:{coid}",
        mapping={
            "client_order_id": coid,
            "broker_order_id": f"PB-{ACCOUNT}-99",
            "session_id": session_id,
            "contract": "ESZ13",
            "side": "buy",
            "quantity": "1",
            "filled_quantity": "0",
            "order_type": "market",
            "limit_price": "",
            "stop_price": "",
            "status": "rejected",
            "decided_at": first_tick_time().isoformat(),
            "time_in_force": "day",
            "average_fill_price": "",
        },
    )


def counted_checks(rig: Fleet) -> set[str]:
    """The reconciliation checks with a last success time."""
    return {field.decode() for field in rig.client.hkeys(RECONCILE_LAST_SUCCESS.key)}


def test_the_order_cases_through_a_worker(redis_url: str, tmp_path: Path) -> None:
    with Fleet(redis_url, tmp_path, reconcile_grace_s=0) as rig:
        sid = rig.create("orders", ACCOUNT)
        rig.publish_replay(replay_ticks()[:50])
        rt = Runtime(rig.settings)
        broker = paper(rt, ACCOUNT)
        rig.local_order(sid, "filled-there")
        assert place(broker, ACCOUNT, sid, "filled-there") == "filled"
        rig.local_order(sid, "cancelled-there", order_type="limit", limit="1000")
        assert place(broker, ACCOUNT, sid, "cancelled-there", "buy", "limit", "1000") == "working"
        assert broker.cancel_order(CancelOrder(ACCOUNT, "cancelled-there")).status == "cancelled"
        rig.local_order(sid, "rejected-there")
        rejected_at_broker(rig, sid, "rejected-there")
        rig.local_order(sid, "absent-there")
        assert place(broker, ACCOUNT, sid, "named-us", "buy", "limit", "1000") == "working"
        assert place(broker, ACCOUNT, "", "anonymous", "sell", "limit", "3000") == "working"

        worker = rig.start_worker(queues=("reconcile",))
        first = worker.app.send_task(RECONCILE_ORDERS, args=[sid], queue="reconcile").get(
            timeout=60
        )
        after_first = rows(rig)
        corrections = {
            "missed_fills": 1,
            "order_cancelled": 1,
            "order_rejected": 1,
            "order_lost": 1,
            "order_adopted": 2,
        }
        wait_counted(rig.client, RECONCILE_CORRECTIONS, corrections)
        orders_counted = counted(rig.client, ORDERS)
        assert "orders" in counted_checks(rig)
        working = sorted(rig.state(sid).orders)
        held = rig.quantity(sid)
        events = [e.message for e in rig.events(sid, "reconciliation")]

        second = worker.app.send_task(RECONCILE_ORDERS, args=[sid], queue="reconcile").get(
            timeout=60
        )
        events_after_second = len(rig.events(sid, "reconciliation"))

        last = replay_ticks()[49]
        rig.publish_raw([(str(epoch_ms(last) + 1000), "3000.00", "1", "", "")])
        third = worker.app.send_task(RECONCILE_ORDERS, args=[sid], queue="reconcile").get(
            timeout=60
        )
        final = rig.state(sid)
        wait_counted(rig.client, RECONCILE_CORRECTIONS, {**corrections, "missed_fills": 2})
        assert counted(rig.client, FILLS) == {"": 2}

    assert after_first == {
        "filled-there": ("filled", False),
        "cancelled-there": ("cancelled", False),
        "rejected-there": ("rejected", False),
        "absent-there": ("lost", False),
        "named-us": ("working", True),
        "anonymous": ("working", True),
    }, first
    assert working == ["anonymous", "named-us"]
    assert orders_counted == {"external": 2, "cancelled": 1, "rejected": 1, "lost": 1, "filled": 1}
    assert held == 1
    assert sorted(events) == sorted(
        [
            "order filled-there filled at the broker: fills applied",
            "order cancelled-there is cancelled at the broker",
            "order rejected-there is rejected at the broker",
            "order absent-there is unknown to the broker: marked lost",
            "external order named-us adopted",
            "external order anonymous adopted",
        ]
    )
    assert second == f"{sid}: in sync (2 open)"
    assert events_after_second == len(events)
    assert "anonymous filled at the broker: 1 missed fill(s) applied" in third
    assert sorted(final.orders) == ["named-us"]
    assert final.open_position is not None and final.open_position.quantity == 0
    assert [t.client_order_id for t in final.trades] == ["filled-there", "anonymous"]


def test_external_orders_are_only_flagged_when_adoption_is_off(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path, reconcile_grace_s=0) as rig:
        sid = rig.create("flagging", ACCOUNT)
        rig.publish_replay(replay_ticks()[:10])
        rt = Runtime(rig.with_settings(adopt_external_orders=False))
        broker = paper(rt, ACCOUNT)
        assert place(broker, ACCOUNT, sid, "outsider", "buy", "limit", "1000") == "working"
        first = reconcile_orders(rt, sid)
        second = reconcile_orders(rt, sid)
        open_there = [o.client_order_id for o in broker.open_orders(QueryOpenOrders(ACCOUNT))]
        (event,) = rig.events(sid, "reconciliation")
        assert first.changes == [
            ("outsider", "flagged: external order names this session; adoption is switched off")
        ]
        assert second.changes == [] and second.line() == f"{sid}: in sync (0 open)"
        assert event.message.startswith("external order outsider:")
        assert rig.state(sid).orders == {} and rows(rig) == {}
        assert open_there == ["outsider"]


def test_an_entry_rejected_at_the_broker_gives_its_reservation_back(
    redis_url: str, tmp_path: Path
) -> None:
    """A flat session reserved 600 of heat for an entry the broker then rejected: the orders
    pass closes the entry and the account's risk book holds nothing for the session again;
    a second session's reservation on the same account is untouched."""
    with Fleet(redis_url, tmp_path, reconcile_grace_s=0) as rig:
        sid = rig.create("rejected-entry", ACCOUNT)
        other = rig.create("other-entry", ACCOUNT)
        book = RiskBook(rig.client, rig.settings.risk)
        equity = Decimal(100_000)
        for session_id in (sid, other):
            answer = book.reserve(
                ACCOUNT, session_id, Decimal(600), Decimal(600), equity, "2013-10-07"
            )
            assert answer.accepted, answer
        assert book.read(ACCOUNT).total == Decimal(1200)
        rig.local_order(sid, "entry-rejected")
        rejected_at_broker(rig, sid, "entry-rejected")

        worker = rig.start_worker(queues=("reconcile",))
        worker.app.send_task(RECONCILE_ORDERS, args=[sid], queue="reconcile").get(timeout=60)
        after = book.read(ACCOUNT)
        working = rig.state(sid).orders

    assert rows(rig)["entry-rejected"] == ("rejected", False)
    assert working == {}
    assert after.sessions.get(sid, Decimal(0)) == 0
    assert after.sessions[other] == Decimal(600)
    assert after.total == Decimal(600)
