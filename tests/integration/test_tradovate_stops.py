"""Protective stops at Tradovate, through real workers and the local Tradovate server (its own
process, its market the session's instrument stream). The entry goes out as one OSO with its
protective stop as bracket.

- The broker that lies: the server's fault ``stop_leg_never_worked`` leaves the bracket
  ``Suspended`` after the entry fills. The fleet must see that the stop does not work, replace
  it with a stop that does, and say so in an event; the new stop then closes the position at
  the broker when the market falls through it.
- A stop move modifies the resting stop in place (one modifyorder, no cancel): a stop rests
  throughout, under the move's id, and closes the position at its new price.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from models.state import WorkingOrder
from tests.kit.fleet import CONTRACT, Fleet
from tests.kit.replay import SessionPlan, first_tick_time, replay_ticks
from tests.kit.tradovate_local import LocalTradovate, fleet_overrides
from tests.kit.wait import wait_until
from trading.intents import client_order_id
from trading.stops import attached_stop_id, move_stop_id
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


def move_stop(rig: Fleet, session_id: str, price: Decimal) -> str:
    """What the tick step does when the strategy moves its stop: the position's new stop price
    in the state, the move's row, its send."""
    coid = move_stop_id(session_id, 2)
    decided = first_tick_time()
    move = WorkingOrder(
        client_order_id=coid,
        contract=CONTRACT,
        side="sell",
        quantity=1,
        order_type="stop",
        intent="exit",
        status="new",
        created_at=decided,
        stop_price=price,
    )
    with rig.store.locked(session_id, wait_s=5) as lease:
        held = lease.value("open_position")
        assert held is not None and held.quantity == 1
        rig.store.write(lease, StateChanges.of({"open_position": replace(held, stop_price=price)}))
    assert insert_order_if_absent(rig.engine, session_id, move, decided, "gtc")
    rig.app.send_task(ORDERS_SEND, args=[session_id, coid], queue="orders")
    return coid


def test_a_stop_move_modifies_the_resting_stop_in_place(
    server: LocalTradovate, redis_url: str, tmp_path: Path
) -> None:
    moved_to = STOP + Decimal("1.00")
    with Fleet(
        redis_url, tmp_path / "fleet", protective_stops=True, **fleet_overrides(server)
    ) as rig:
        plan = SessionPlan("mover", ACCOUNT, "breakout", (("lookback", "500"),), broker="tradovate")
        sid = rig.create_sessions([plan])["mover"]
        broker = build_broker("tradovate", {"account": ACCOUNT}, rig.settings)
        rig.start_worker(queues=("ticks", "orders"))
        rig.publish_replay(replay_ticks()[:ENTRY_TICKS])
        _, bracket_id = decide_entry_with_stop(rig, sid)

        def resting() -> list[tuple[str, Decimal | None, str]]:
            working = broker.open_orders(QueryOpenOrders(ACCOUNT))
            return [(o.client_order_id, o.stop_price, o.broker_order_id) for o in working]

        def bracket_rests() -> list[tuple[str, Decimal | None, str]]:
            row = get_order_row(rig.engine, bracket_id)
            rests = resting()
            ready = rig.quantity(sid) == 1 and row is not None and row.status == "working"
            return rests if ready and [r[0] for r in rests] == [bracket_id] else []

        [(_, _, bracket_order)] = wait_until(bracket_rests, 30, what="the bracket resting")
        move_id = move_stop(rig, sid, moved_to)

        def moved() -> list[tuple[str, Decimal | None, str]]:
            row = get_order_row(rig.engine, move_id)
            rests = resting()
            done = (
                row is not None and row.status == "working" and rests[:1] and rests[0][0] == move_id
            )
            return rests if done else []

        after = wait_until(moved, 30, what="the stop moved in place")
        bracket_row = get_order_row(rig.engine, bracket_id)
        commands = server.control("GET", "state")["commands"]
        through = epoch_ms(replay_ticks()[ENTRY_TICKS - 1]) + 60_000
        rig.publish_raw([(str(through), "1674.50", "1", "", "")])
        wait_until(lambda: rig.quantity(sid) == 0, 30, what="the moved stop to close the position")
        trades = rig.state(sid).trades
        final_positions = broker.positions(QueryPositions(ACCOUNT))

    assert after == [(move_id, moved_to, bracket_order)], "the same order, at the new price"
    assert bracket_row is not None and bracket_row.status == "cancelled"
    kinds = [c["commandType"] for c in commands if c["orderId"] == int(bracket_order)]
    assert kinds == ["New", "Modify"], kinds
    assert [(t.client_order_id, t.quantity, t.price) for t in trades][-1] == (
        move_id,
        -1,
        Decimal("1674.50"),
    )
    assert final_positions == {}


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
