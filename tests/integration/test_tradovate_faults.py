"""Tradovate's faults end to end (issue #16, point 7): real workers, the real replayed ES day,
sessions on broker ``tradovate`` against the local Tradovate server (its own process; its
market the sessions' instrument stream, ``--market-redis``).

- A tick worker and the orders worker SIGKILLed while orders are in flight: after settling,
  every fill the server made for a session's orders is applied exactly once (trades and fill
  rows), no client order id was sent twice (one ``New`` command each at the server), and every
  session's position is the server's.
- The user-sync listener (``tradefleet broker listen``) running while the server duplicates and
  reorders its ``props``: the fills it announces are applied once each.
- The user socket dropped, and the listener killed, while fills happen: the fills are still
  applied, by the order's poll chain or by the delivery every (re)sync queues; the session's
  position is the server's.

What the server saw is read from ``GET /_local/state``; waits poll with deadlines.
"""

from __future__ import annotations

import re
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.state import WorkingOrder
from models.tables import FillRow, OrderRow
from tests.kit.fleet import CONTRACT, Fleet
from tests.kit.replay import ACTIVE, SessionPlan, first_tick_time, replay_ticks
from tests.kit.tradovate_local import PASSWORD, SEC, LocalTradovate, fleet_overrides
from tests.kit.wait import wait_until
from trading.intents import client_order_id
from workers.brokers.commands import PlaceOrder
from workers.brokers.registry import build_broker
from workers.db.order_rows import get_order_row, insert_order_if_absent, update_order_row
from workers.dispatch.names import ORDERS_DELIVER, ORDERS_SEND
from workers.state.store import StateChanges
from workers.ticks.publisher import epoch_ms
from workers.tools.processes import ChildProcesses

pytestmark = pytest.mark.integration

ACCOUNTS = ("ACC-TV1", "ACC-TV2")
QUIET = ("breakout", (("lookback", "500"),))
"""A strategy that decides nothing on the first hours of the day: the test places the orders."""
KILL_TICKS = 1_200
"""The day's first 300 minutes: dozens of orders per session (every send reads the account's
whole order, command and fill lists at Tradovate, so a whole day would be slow)."""
RECOVERY = {
    "visibility_timeout_s": 10,
    "lock_ttl_ms": 2_000,
    "drainer_grace_ms": 2_000,
    "sweep_interval_s": 0.5,
    "tick_batch": 25,
    "max_drainers": 1,
}
"""Quick recovery after a SIGKILL: a killed task is delivered again after 10 s, leases and
drainer places lapse after 2 s, beat sweeps every 0.5 s; small tick batches make the drain
long enough to be killed half-way."""


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[LocalTradovate]:
    accounts = [arg for name in ACCOUNTS for arg in ("--account", f"{name}:100000")]
    local = LocalTradovate.start(tmp_path, "--market-redis", redis_url, *accounts)
    yield local
    local.stop()


def truth(server: LocalTradovate) -> dict[str, Any]:
    state: dict[str, Any] = server.control("GET", "state")
    return state


def fill_ids_at_server(state: dict[str, Any], account: str) -> set[str]:
    """The execution ids of every fill the server made on ``account``."""
    account_id = next(a["id"] for a in state["accounts"] if a["name"] == account)
    orders = {o["id"]: o for o in state["orders"]}
    return {
        str(f["id"])
        for f in state["fills"]
        if f["active"] and orders[f["orderId"]]["accountId"] == account_id
    }


def net_at_server(state: dict[str, Any], account: str) -> int:
    account_id = next(a["id"] for a in state["accounts"] if a["name"] == account)
    return sum(p["netPos"] for p in state["positions"] if p["accountId"] == account_id)


def sent_twice(state: dict[str, Any]) -> dict[str, int]:
    """Client order ids the server was asked more than once to create an order for."""
    news = Counter(
        c["clOrdId"] for c in state["commands"] if c["commandType"] == "New" and c.get("clOrdId")
    )
    return {coid: n for coid, n in news.items() if n > 1}


def fill_rows(rig: Fleet, session_id: str) -> list[str]:
    """The execution ids of the session's fill rows (SQL), with repeats if any."""
    query = (
        select(FillRow.execution_id)
        .join(OrderRow, FillRow.order_id == OrderRow.id)
        .where(OrderRow.session_id == session_id)
    )
    with Session(rig.engine) as db:
        return list(db.scalars(query).all())


def assert_exactly_once(rig: Fleet, server: LocalTradovate, sessions: dict[str, str]) -> int:
    """Every server fill on each session's account applied once in that session (trades and
    fill rows), no order sent twice, each position the server's; the number of fills."""
    state = truth(server)
    assert sent_twice(state) == {}
    fills = 0
    for session_id, account in sessions.items():
        at_server = fill_ids_at_server(state, account)
        trades = Counter(t.execution_id for t in rig.state(session_id).trades)
        assert [e for e, n in trades.items() if n > 1] == [], "a fill applied twice"
        assert set(trades) == at_server, f"{account}: trades differ from the server's fills"
        rows = fill_rows(rig, session_id)
        assert sorted(rows) == sorted(at_server), f"{account}: fill rows differ"
        assert rig.quantity(session_id) == net_at_server(state, account), account
        news = Counter(c.get("clOrdId") for c in state["commands"] if c["commandType"] == "New")
        for row in rig.sql_orders(session_id=session_id):
            assert row.status not in {"new", "lost"}, (row.client_order_id, row.status)
            if row.status != "cancelled":
                assert news[row.client_order_id] == 1, row.client_order_id
        fills += len(at_server)
    return fills


def deliveries(rig: Fleet) -> list[dict[str, int]]:
    """The results of every ``tradefleet.orders.deliver`` the fleet's workers finished."""
    done = re.compile(re.escape(ORDERS_DELIVER) + r"\[[^\]]+\] succeeded in [^:]+: (\{.*\})")
    found: list[dict[str, int]] = []
    for worker in rig.workers:
        if worker.log_path.exists():
            for match in done.finditer(worker.log_text()):
                found.append(eval(match.group(1), {}))  # a dict of ints, our log
    return found


# --------------------------------------------------------------------------- (a) SIGKILL


def test_tick_and_orders_workers_killed_with_orders_in_flight_lose_no_fill(
    server: LocalTradovate, redis_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path / "fleet", **RECOVERY, **fleet_overrides(server)) as rig:
        plans = [
            SessionPlan(f"s{n}", a, *ACTIVE, broker="tradovate") for n, a in enumerate(ACCOUNTS)
        ]
        ids = rig.create_sessions(plans)
        sessions = {ids[p.name]: p.account for p in plans}
        ticks = rig.start_worker(queues=("ticks",))
        orders = rig.start_worker(queues=("orders",), concurrency=2)
        rig.publish_replay(replay_ticks()[:KILL_TICKS])
        total = rig.published * len(plans)

        def in_flight() -> list[str]:
            traded = sum(len(rig.state(sid).trades) for sid in sessions) >= 4
            unanswered = [r.client_order_id for r in rig.sql_orders() if r.status == "new"]
            return unanswered if traded else []

        unanswered = wait_until(in_flight, 90, interval=0.005, what="an order in flight")
        orders.kill()
        orders.wait_exit()
        at_orders_kill = rig.consumed()
        wait_until(
            lambda: rig.consumed() > at_orders_kill + 200, 60, what="ticks drained after the kill"
        )
        ticks.kill()
        ticks.wait_exit()
        consumed_at_kill = rig.consumed()
        assert 0 < consumed_at_kill < total, "the tick worker must die in the middle of the drain"
        queued = [r.client_order_id for r in rig.sql_orders() if r.status == "new"]

        rig.start_beat()
        rig.start_worker(queues=("ticks",))
        rig.start_worker(queues=("orders",), concurrency=2)
        rig.wait_settled(timeout=240)
        fills = assert_exactly_once(rig, server, sessions)

    logs = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.log"))
    assert PASSWORD not in logs and SEC not in logs, "a Tradovate secret in a log"
    assert unanswered, "an order was unanswered when the orders worker died"
    assert queued, "orders were waiting to be sent when the tick worker died"
    assert fills >= 10


# --------------------------------------------------------------------------- listener


class Listener:
    """``tradefleet broker listen --broker tradovate`` for the fleet's accounts, a process."""

    def __init__(self, rig: Fleet, accounts: tuple[str, ...]) -> None:
        self.children = ChildProcesses(log_dir=rig.workdir / "listener", env=rig.worker_env())
        self.argv = [sys.executable, "-m", "workers.cli.main", "broker", "listen"]
        self.argv += ["--broker", "tradovate"]
        self.argv += [arg for account in accounts for arg in ("--account", account)]
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        self.children.start(f"listen-{self.runs}", self.argv)

    def kill(self) -> None:
        proc = self.children.children[f"listen-{self.runs}"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        self.children.stop()


def resting_order(
    rig: Fleet, session_id: str, account: str, seq: int, side: str, limit: str
) -> str:
    """A limit order of the session placed at Tradovate directly (no send task, so no poll
    chain; only a delivery applies its fills), recorded as the send path records one: its row
    and working copy ``new`` before it goes out, ``working`` once the broker acknowledged it
    (a delivery that rechecks working orders meanwhile must not find one the broker cannot
    know yet and call it lost)."""
    coid = client_order_id(session_id, seq, 0)
    made = rig.local_order(session_id, coid, side, "limit", limit, "new")
    broker = build_broker("tradovate", {"account": account}, rig.settings)
    ack = broker.place_order(
        PlaceOrder(
            account=account,
            session_id=session_id,
            client_order_id=coid,
            contract=CONTRACT,
            side=side,  # type: ignore[arg-type]
            quantity=made.quantity,
            order_type="limit",
            limit_price=Decimal(limit),
            decided_at=first_tick_time(),
        )
    )
    assert ack.status == "working", ack
    update_order_row(rig.engine, coid, "working", broker_order_id=ack.broker_order_id)
    with rig.store.locked(session_id, wait_s=5) as lease:
        orders: dict[str, WorkingOrder] = lease.value("orders")
        acked = replace(orders[coid], status="working", broker_order_id=ack.broker_order_id)
        rig.store.write(lease, StateChanges.of({"orders": {**orders, coid: acked}}))
    return coid


def print_at(rig: Fleet, after_ms: int, price: str) -> None:
    """One trade at ``price`` in the sessions' stream (and so at the server's market)."""
    rig.publish_raw([(str(after_ms), price, "1", "", "")])


def test_duplicated_and_reordered_props_apply_each_fill_once(
    server: LocalTradovate, redis_url: str, tmp_path: Path
) -> None:
    account = ACCOUNTS[0]
    with Fleet(redis_url, tmp_path / "fleet", **fleet_overrides(server)) as rig:
        sid = rig.create_sessions([SessionPlan("quiet", account, *QUIET, broker="tradovate")])[
            "quiet"
        ]
        rig.start_worker(queues=("ticks",))
        rig.start_worker(queues=("orders",), concurrency=2)
        listener = Listener(rig, (account,))
        try:
            listener.start()
            wait_until(lambda: deliveries(rig), 30, what="the listener's first sync delivery")
            head = replay_ticks()[:50]
            rig.publish_replay(head)
            rig.wait_read()
            server.control("POST", "faults", {"duplicate_props": True, "reorder_props": True})
            coids = [
                resting_order(rig, sid, account, 1, "buy", "1674.00"),
                resting_order(rig, sid, account, 2, "buy", "1673.00"),
                resting_order(rig, sid, account, 3, "sell", "1678.00"),
            ]
            last = epoch_ms(head[-1])
            for n, price in enumerate(("1673.75", "1672.50", "1678.25"), 1):
                print_at(rig, last + n * 60_000, price)

            def all_applied() -> bool:
                state = truth(server)
                return (
                    len(fill_ids_at_server(state, account)) == 3 and len(rig.state(sid).trades) == 3
                )

            wait_until(all_applied, 60, what="the three fills applied")
            wait_until(lambda: not rig.unsettled(), 60, what="the session to settle")
            fills = assert_exactly_once(rig, server, {sid: account})
        finally:
            listener.stop()
        applied = sum(d["fills_applied"] for d in deliveries(rig))

    logs = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.log"))
    assert PASSWORD not in logs and SEC not in logs, "a Tradovate secret in a log"
    assert fills == 3
    assert [t.client_order_id for t in rig.state(sid).trades] == coids
    assert applied == 3, "the listener's deliveries applied every fill, once"


def test_the_socket_dropped_mid_fill_and_the_listener_killed_still_apply_the_fill(
    server: LocalTradovate, redis_url: str, tmp_path: Path
) -> None:
    account = ACCOUNTS[0]
    with Fleet(redis_url, tmp_path / "fleet", **fleet_overrides(server)) as rig:
        sid = rig.create_sessions([SessionPlan("quiet", account, *QUIET, broker="tradovate")])[
            "quiet"
        ]
        rig.start_worker(queues=("ticks",))
        rig.start_worker(queues=("orders",))
        head = replay_ticks()[:50]
        rig.publish_replay(head)
        rig.wait_read()
        last = epoch_ms(head[-1])
        listener = Listener(rig, (account,))
        try:
            listener.start()
            wait_until(lambda: deliveries(rig), 30, what="the listener's first sync delivery")

            # The socket dropped as the fill happens: the resync's delivery applies it.
            first = resting_order(rig, sid, account, 1, "buy", "1674.00")
            server.control("POST", "faults", {"drop_sockets": True})
            print_at(rig, last + 60_000, "1673.75")
            wait_until(lambda: rig.quantity(sid) == 1, 30, what="the fill applied after the drop")
            assert_exactly_once(rig, server, {sid: account})

            # The listener dead while the fill happens: its next start's sync applies it.
            listener.kill()
            second = resting_order(rig, sid, account, 2, "sell", "1677.00")
            print_at(rig, last + 120_000, "1677.25")
            wait_until(
                lambda: len(fill_ids_at_server(truth(server), account)) == 2, 10, what="2nd fill"
            )
            listener.start()
            wait_until(lambda: rig.quantity(sid) == 0, 30, what="the fill applied after restart")
            assert_exactly_once(rig, server, {sid: account})

            # No listener at all: an order sent by the fleet is brought in by its poll chain.
            listener.kill()
            third = client_order_id(sid, 3, 0)
            rig.local_order(sid, third, "buy", "limit", "1672.00", "new")
            rig.app.send_task(ORDERS_SEND, args=[sid, third], queue="orders")
            wait_until(
                lambda: rig.sql_orders(session_id=sid)[-1].status == "working", 30, what="sent"
            )
            print_at(rig, last + 180_000, "1671.50")
            wait_until(lambda: rig.quantity(sid) == 1, 30, what="the poll chain applies the fill")
            fills = assert_exactly_once(rig, server, {sid: account})
        finally:
            listener.stop()
        trades = [t.client_order_id for t in rig.state(sid).trades]

    assert fills == 3
    assert trades == [first, second, third]


# --------------------------------------------------------------------------- partial fills


def test_an_order_filled_in_parts_has_every_part_applied_by_its_poll_chain(
    server: LocalTradovate, redis_url: str, tmp_path: Path
) -> None:
    """No listener: the send applies the first part, the order's poll chain the others (an
    order partly filled is still working at the broker, so it is not final here either)."""
    account = ACCOUNTS[0]
    with Fleet(redis_url, tmp_path / "fleet", **fleet_overrides(server)) as rig:
        sid = rig.create_sessions([SessionPlan("quiet", account, *QUIET, broker="tradovate")])[
            "quiet"
        ]
        rig.start_worker(queues=("ticks", "orders"))
        head = replay_ticks()[:50]
        rig.publish_replay(head)
        rig.wait_read()
        decided = head[-1].time
        coid = client_order_id(sid, 1, 0)
        entry = WorkingOrder(
            client_order_id=coid,
            contract=CONTRACT,
            side="buy",
            quantity=3,
            order_type="market",
            intent="entry",
            status="new",
            created_at=decided,
        )
        with rig.store.locked(sid, wait_s=5) as lease:
            rig.store.write(lease, StateChanges.of({"orders": {coid: entry}}))
        assert insert_order_if_absent(rig.engine, sid, entry, decided, "day")
        server.control("POST", "faults", {"partial_fills": 3})
        rig.app.send_task(ORDERS_SEND, args=[sid, coid], queue="orders")
        wait_until(lambda: rig.quantity(sid) == 1, 30, what="the first part applied")
        last = epoch_ms(head[-1])
        for n in (1, 2):
            print_at(rig, last + n * 60_000, "1676.00")
            wait_until(lambda n=n: rig.quantity(sid) == 1 + n, 30, what=f"part {n + 1} applied")
        wait_until(lambda: not rig.unsettled(), 30, what="the session to settle")
        fills = assert_exactly_once(rig, server, {sid: account})
        row = get_order_row(rig.engine, coid)
        trades = rig.state(sid).trades

    assert fills == 3
    assert [(t.client_order_id, t.quantity) for t in trades] == [(coid, 1)] * 3
    assert row is not None and row.status == "filled"
