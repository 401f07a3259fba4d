"""Protective stops at the broker, through a real worker (real Redis, SQLite, the paper broker).

The entry is made the way the tick step makes one: a working copy carrying ``stop_price`` in
the session's state, the order row written, then the ``tradefleet.orders.send`` task (the
strategy is warming up all along, so it decides nothing of its own). When the entry fills, a
stop rests at the broker; a tick through it closes the position at the stop price; a stop
deleted at the broker behind the session's back is re-placed by order reconciliation. Both run
with the ``protective_stops`` setting on (the rig's settings, so its workers' environment too).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from models.state import Intent, Side, WorkingOrder
from models.tables import OrderRow
from tests.kit.fleet import CONTRACT, Fleet
from tests.kit.paper import paper
from tests.kit.replay import SessionPlan, first_tick_time, replay_ticks
from tests.kit.wait import wait_until
from trading.intents import client_order_id
from workers.brokers.commands import BrokerOrder, CancelOrder, QueryOpenOrders, QueryPositions
from workers.brokers.paper.broker import PaperBroker
from workers.db.order_rows import get_order_row, insert_order_if_absent
from workers.db.session_rows import get_session_row
from workers.dispatch.names import ORDERS_SEND, RECONCILE_ORDERS
from workers.orders import send as orders_module
from workers.orders.send import send_order
from workers.runtime import Runtime
from workers.state.store import StateChanges
from workers.stops.sync import is_stop_id, stop_id
from workers.ticks.publisher import epoch_ms

pytestmark = pytest.mark.integration

ACCOUNT = "ACC-STOP"
STOP = Decimal("1674.00")
"""Below every price of the first 50 replay ticks (1675.50 .. 1676.75)."""
ENTRY_TICKS = 50


def open_session(rig: Fleet) -> str:
    """A breakout session that stays in warmup (its lookback exceeds the ticks published)."""
    plan = SessionPlan("stops", ACCOUNT, "breakout", (("lookback", "500"),))
    return rig.create_sessions([plan])["stops"]


def enter_long_with_stop(rig: Fleet, session_id: str, *, send: bool = True) -> str:
    """What the tick step does for a breakout entry: working copy with its stop, row, send
    (queued for a worker; without ``send`` the caller sends it)."""
    ticks = replay_ticks()[:ENTRY_TICKS]
    assert min(t.price for t in ticks) > STOP
    rig.publish_replay(ticks)
    order = decide_market(rig, session_id, 1, "buy", "entry", first_tick_time(), stop_price=STOP)
    if send:
        rig.app.send_task(ORDERS_SEND, args=[session_id, order.client_order_id], queue="orders")
    return order.client_order_id


def decide_market(
    rig: Fleet,
    session_id: str,
    seq: int,
    side: Side,
    intent: Intent,
    decided: datetime,
    stop_price: Decimal | None = None,
) -> WorkingOrder:
    """What the tick step does with a market order it decides: the working copy in the
    session's state, then the order row (the send is the caller's)."""
    order = WorkingOrder(
        client_order_id=client_order_id(session_id, seq, 0),
        contract=CONTRACT,
        side=side,
        quantity=1,
        order_type="market",
        intent=intent,
        status="new",
        created_at=decided,
        stop_price=stop_price,
    )
    with rig.store.locked(session_id, wait_s=5) as lease:
        orders = {**lease.value("orders"), order.client_order_id: order}
        rig.store.write(lease, StateChanges.of({"orders": orders}))
    assert insert_order_if_absent(rig.engine, session_id, order, decided, "day")
    return order


def resting_stops(broker: PaperBroker) -> list[BrokerOrder]:
    return [o for o in broker.open_orders(QueryOpenOrders(ACCOUNT)) if o.order_type == "stop"]


def wait_for_stop(rig: Fleet, broker: PaperBroker, session_id: str) -> BrokerOrder:
    """Until the entry has filled and its one stop rests at the broker with the broker's answer
    recorded on the stop's row (the worker writes the row just after the broker answers)."""

    def resting() -> BrokerOrder | None:
        stops = resting_stops(broker)
        if rig.quantity(session_id) != 1 or len(stops) != 1:
            return None
        row = get_order_row(rig.engine, stops[0].client_order_id)
        return stops[0] if row is not None and row.status != "new" else None

    return wait_until(resting, 30, what="the entry's stop to rest at the broker")


def _filled_row(rig: Fleet, coid: str) -> OrderRow | None:
    """The order's row once it says filled (the session's state is written before it)."""
    row = get_order_row(rig.engine, coid)
    return row if row is not None and row.status == "filled" else None


def test_a_stop_rests_after_the_entry_fills_and_closes_the_position_at_its_price(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path, protective_stops=True) as rig:
        sid = open_session(rig)
        rig.start_worker(queues=("ticks", "orders"))
        broker = paper(Runtime(rig.settings), ACCOUNT)
        entry = enter_long_with_stop(rig, sid)
        stop = wait_for_stop(rig, broker, sid)
        held = rig.state(sid).open_position
        stop_row = get_order_row(rig.engine, stop.client_order_id)

        through = epoch_ms(replay_ticks()[ENTRY_TICKS - 1]) + 60_000
        rig.publish_raw([(str(through), str(STOP), "1", "", "")])
        wait_until(lambda: rig.quantity(sid) == 0, 30)
        final = rig.state(sid)
        broker_positions = broker.positions(QueryPositions(ACCOUNT))
        still_resting = resting_stops(broker)
        filled_row = wait_until(
            lambda: _filled_row(rig, stop.client_order_id), 10, what="the stop's row filled"
        )

    assert stop.client_order_id == stop_id(sid, 1) and is_stop_id(stop.client_order_id)
    assert (stop.side, stop.quantity, stop.stop_price) == ("sell", 1, STOP)
    assert stop.session_id == sid and stop.contract == CONTRACT
    assert held is not None and held.stop_price == STOP
    assert stop_row is not None and (stop_row.intent, stop_row.status) == ("exit", "working")
    assert final.open_position is not None and final.open_position.quantity == 0
    assert final.open_position.stop_price is None
    assert [(t.client_order_id, t.quantity) for t in final.trades] == [
        (entry, 1),
        (stop.client_order_id, -1),
    ]
    assert final.trades[-1].price == STOP
    assert final.orders == {}
    assert broker_positions == {} and still_resting == []
    assert filled_row is not None and filled_row.status == "filled"


def test_a_stop_deleted_at_the_broker_is_re_placed_by_order_reconciliation(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path, reconcile_grace_s=0, protective_stops=True) as rig:
        sid = open_session(rig)
        worker = rig.start_worker(queues=("ticks", "orders", "reconcile"))
        broker = paper(Runtime(rig.settings), ACCOUNT)
        enter_long_with_stop(rig, sid)
        first = wait_for_stop(rig, broker, sid)
        assert broker.cancel_order(CancelOrder(ACCOUNT, first.client_order_id)).status == (
            "cancelled"
        )
        assert resting_stops(broker) == []

        report = worker.app.send_task(RECONCILE_ORDERS, args=[sid], queue="reconcile").get(
            timeout=60
        )
        replaced = resting_stops(broker)
        events = [e.message for e in rig.events(sid, "reconciliation")]
        again = worker.app.send_task(RECONCILE_ORDERS, args=[sid], queue="reconcile").get(
            timeout=60
        )
        events_again = len(rig.events(sid, "reconciliation"))
        old_row = get_order_row(rig.engine, first.client_order_id)
        held = rig.quantity(sid)

    (new,) = replaced
    assert new.client_order_id == stop_id(sid, 2)
    assert (new.side, new.quantity, new.stop_price) == ("sell", 1, STOP)
    assert held == 1
    assert old_row is not None and old_row.status == "cancelled"
    assert "protective stop placed" in report and new.client_order_id in report
    assert any(
        m.startswith("protective stop missing") and new.client_order_id in m for m in events
    ), events
    assert again == f"{sid}: in sync (1 open)"
    assert events_again == len(events)


def test_an_exit_dropped_for_a_filled_stop_stays_dropped_for_a_second_send(
    redis_url: str, tmp_path: Path
) -> None:
    """Two sends of one exit (a retry, or a later order's send placing earlier rows first) may
    run at once. The first finds the stop filled before the exit's decision and drops the exit;
    the second, holding the row as read before that and finding the stop's fill applied (its
    row no longer open), must drop it too: placing it would close the position twice. (Sends
    run in this process; a worker runs the session's tick steps, which see the touch.)"""
    with Fleet(redis_url, tmp_path, protective_stops=True) as rig:
        sid = open_session(rig)
        rt = Runtime(rig.settings)
        broker = paper(rt, ACCOUNT)
        entry = enter_long_with_stop(rig, sid, send=False)
        assert send_order(rt, sid, entry).status == "filled"
        (stop,) = resting_stops(broker)
        through = epoch_ms(replay_ticks()[ENTRY_TICKS - 1]) + 60_000
        rig.start_worker(queues=("ticks",))
        rig.publish_raw([(str(through), str(STOP - 1), "1", "", "")])
        wait_until(lambda: rig.progress("stops").last_ms == through, 30)
        decided = datetime.fromtimestamp(through / 1000, UTC) + timedelta(seconds=30)
        exit_order = decide_market(rig, sid, 2, "sell", "exit", decided)
        stale = get_order_row(rig.engine, exit_order.client_order_id)
        assert stale is not None and stale.status == "new"

        first = send_order(rt, sid, exit_order.client_order_id)
        stop_row = get_order_row(rig.engine, stop.client_order_id)
        session_row = get_session_row(rig.engine, sid)
        assert session_row is not None
        second = orders_module._send(rt, broker, session_row, stale)
        exit_row = get_order_row(rig.engine, exit_order.client_order_id)
        positions = broker.positions(QueryPositions(ACCOUNT))
        final = rig.state(sid)

    assert first.status == "cancelled"
    assert stop_row is not None and stop_row.status == "filled"
    assert second.status == "cancelled"
    assert exit_row is not None and exit_row.status == "cancelled"
    assert positions == {}, "the exit never reached the broker: the stop alone closed the long"
    assert final.open_position is not None and final.open_position.quantity == 0
    assert [(t.client_order_id, t.quantity, t.price) for t in final.trades] == [
        (entry, 1, final.trades[0].price),
        (stop.client_order_id, -1, STOP - 1),
    ], "the stop filled at the tick that gapped through it"
