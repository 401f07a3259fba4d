"""The broker that lies: Tradovate acknowledges an entry's stop bracket, then never works it.

Real workers trade one session through the Tradovate adapter against the local Tradovate server
(its own process, its market the session's instrument stream). The entry goes out as one OSO
with its protective stop; the server's fault ``stop_leg_never_worked`` leaves the bracket
``Suspended`` after the entry fills. The fleet must see that the stop does not work, replace it
with a stop that does, and say so in an event; the new stop then closes the position at the
broker when the market falls through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from models.state import WorkingOrder
from tests.kit.fleet import CONTRACT, Fleet
from tests.kit.replay import SessionPlan, first_tick_time, replay_ticks
from tests.kit.tradovate_local import LocalTradovate, fleet_overrides
from tests.kit.wait import wait_until
from trading.intents import client_order_id
from trading.stops import attached_stop_id
from workers.brokers.commands import QueryOpenOrders, QueryPositions
from workers.brokers.registry import build_broker
from workers.db.order_rows import get_order_row, insert_order_if_absent
from workers.dispatch.names import ORDERS_SEND
from workers.state.store import StateChanges
from workers.stops.sync import stop_id
from workers.ticks.publisher import epoch_ms

pytestmark = pytest.mark.integration

ACCOUNT = "ACC-LIAR"
STOP = Decimal("1674.00")
"""Below every price of the first 50 replay ticks (1675.50 .. 1676.75)."""
ENTRY_TICKS = 50


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[LocalTradovate]:
    local = LocalTradovate.start(
        tmp_path, "--market-redis", redis_url, "--account", f"{ACCOUNT}:100000"
    )
    yield local
    local.stop()


def decide_entry_with_stop(rig: Fleet, session_id: str) -> tuple[str, str]:
    """What the tick step does for an entry decided with its stop: the working copy, both
    rows (the entry's, then its attached stop's), both sends."""
    decided = first_tick_time()
    entry_id = client_order_id(session_id, 1, 0)
    entry = WorkingOrder(
        client_order_id=entry_id,
        contract=CONTRACT,
        side="buy",
        quantity=1,
        order_type="market",
        intent="entry",
        status="new",
        created_at=decided,
        stop_price=STOP,
    )
    stop = WorkingOrder(
        client_order_id=attached_stop_id(entry_id),
        contract=CONTRACT,
        side="sell",
        quantity=1,
        order_type="stop",
        intent="exit",
        status="new",
        created_at=decided,
        stop_price=STOP,
    )
    with rig.store.locked(session_id, wait_s=5) as lease:
        orders = {**lease.value("orders"), entry_id: entry}
        rig.store.write(lease, StateChanges.of({"orders": orders}))
    assert insert_order_if_absent(rig.engine, session_id, entry, decided, "day")
    assert insert_order_if_absent(rig.engine, session_id, stop, decided, "day")
    for coid in (entry_id, stop.client_order_id):
        rig.app.send_task(ORDERS_SEND, args=[session_id, coid], queue="orders")
    return entry_id, stop.client_order_id


def test_a_stop_bracket_never_worked_is_replaced_with_an_event(
    server: LocalTradovate, redis_url: str, tmp_path: Path
) -> None:
    with Fleet(
        redis_url, tmp_path / "fleet", protective_stops=True, **fleet_overrides(server)
    ) as rig:
        plan = SessionPlan("liar", ACCOUNT, "breakout", (("lookback", "500"),), broker="tradovate")
        sid = rig.create_sessions([plan])["liar"]
        broker = build_broker("tradovate", {"account": ACCOUNT}, rig.settings)
        rig.start_worker(queues=("ticks", "orders"))
        server.control("POST", "faults", {"stop_leg_never_worked": True})
        rig.publish_replay(replay_ticks()[:ENTRY_TICKS])
        entry_id, bracket_id = decide_entry_with_stop(rig, sid)

        # the session's second stop (the bracket that never worked was its first)
        def replaced() -> list[str]:
            working = broker.open_orders(QueryOpenOrders(ACCOUNT))
            stops = [o.client_order_id for o in working if o.order_type == "stop"]
            return stops if rig.quantity(sid) == 1 and stops == [stop_id(sid, 2)] else []

        wait_until(replaced, 30, what="the never-worked bracket replaced by a working stop")
        events = [e.message for e in rig.events(sid, "reconciliation")]
        bracket_row = get_order_row(rig.engine, bracket_id)
        truth = server.control("GET", "state")
        suspended = [o for o in truth["orders"] if o["ordStatus"] == "Suspended"]

        through = epoch_ms(replay_ticks()[ENTRY_TICKS - 1]) + 60_000
        rig.publish_raw([(str(through), "1673.50", "1", "", "")])
        wait_until(lambda: rig.quantity(sid) == 0, 30, what="the new stop to close the position")
        final_positions = broker.positions(QueryPositions(ACCOUNT))
        trades = rig.state(sid).trades

    assert bracket_row is not None and bracket_row.status == "cancelled"
    assert suspended == [], "the bracket that never worked is cancelled at the broker"
    assert any(m.startswith("protective stop missing") and stop_id(sid, 2) in m for m in events), (
        events
    )
    assert final_positions == {}
    assert [(t.client_order_id, t.quantity) for t in trades] == [
        (entry_id, 1),
        (stop_id(sid, 2), -1),
    ]
    assert trades[-1].price == Decimal("1673.50")
