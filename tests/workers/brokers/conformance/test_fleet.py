"""The fleet over every broker: reconciliation, a contract roll and recovery through real Celery
workers (and beat), parametrized over the paper broker and Tradovate (the adapter against the
local Tradovate server, its own process and truth, its market the fleet's instrument streams).

Every test asserts the same outcome for both brokers: the same positions, prices, money, order
counts and events. Where the brokers differ in HOW they get there (the paper broker matches in
data time when asked; the local server works orders live on the ticks it has seen), the test
prints the market so both fill at the same price, and waits for the outcome with a deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.state import SessionState
from models.tables import FillRow, OrderRow
from tests.kit.fleet import Fleet
from tests.kit.replay import SessionPlan, replay_ticks
from tests.kit.snapshots import CONTRACT
from tests.kit.wait import wait_until
from tests.workers.brokers.conformance.fleet_venues import (
    ACCOUNT,
    COMMISSION,
    STARTING_CASH,
    FleetVenue,
    PaperFleetVenue,
    TradovateFleetVenue,
)
from tests.workers.rolls.roll_rig import NEW_CONTRACT, QUIET, Prices, RollRig
from trading.intents import client_order_id
from workers.brokers.commands import (
    PlaceOrder,
    QueryBalance,
    QueryOpenOrders,
    QueryOrder,
)
from workers.dispatch.names import RECONCILE_ORDERS, RECONCILE_POSITIONS

pytestmark = pytest.mark.integration

POINT_VALUE = Decimal(50)
"""ES: 50 USD a point."""
TASK_TIMEOUT_S = 60


@pytest.fixture(params=["paper", "tradovate"])
def venue(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[FleetVenue]:
    made: FleetVenue = (
        PaperFleetVenue()
        if request.param == "paper"
        else TradovateFleetVenue(redis_url, tmp_path / "tradovate")
    )
    yield made
    made.close()


def fleet(venue: FleetVenue, redis_url: str, tmp_path: Path, **overrides: Any) -> RollRig:
    """A fleet trading through ``venue`` (its sessions run a strategy that never trades here,
    so every order is the test's)."""
    return RollRig(redis_url, tmp_path / "fleet", **{**venue.overrides(), **overrides})


def create(rig: Fleet, venue: FleetVenue, name: str) -> str:
    plan = SessionPlan(name, venue.account, *QUIET, broker=venue.name)
    return rig.create_sessions([plan])[name]


def prime(rig: Fleet, venue: FleetVenue, count: int = 50) -> datetime:
    """The first ``count`` real ESZ13 ticks, read by every session and seen by the broker;
    the data time of the last."""
    ticks = replay_ticks()[:count]
    rig.publish_replay(ticks)
    rig.wait_read()
    venue.seen(rig, ticks[-1].time)
    return ticks[-1].time


def print_at(
    rig: Fleet, venue: FleetVenue, when: datetime, price: str, bid: str = "", ask: str = ""
) -> datetime:
    """One print of ESZ13 at ``when`` (with its touch), read by the sessions and seen by the
    broker: a market order decided at ``when`` fills on it at both brokers (the paper broker
    on the first print at or after the decision, the local server at the last print it saw)."""
    rig.publish_raw([(str(epoch_ms_of(when)), price, "1", bid, ask)])
    rig.wait_read()
    venue.seen(rig, when)
    return when


def epoch_ms_of(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def place_own(
    rig: Fleet, venue: FleetVenue, session_id: str, coid: str, decided: datetime, **kw: Any
) -> str:
    """The session's own order, placed at the broker while no worker brings its answer back
    (the orders worker is down): its status there once the broker answers for it."""
    broker = venue.broker(rig)
    command = PlaceOrder(
        account=venue.account,
        session_id=session_id,
        client_order_id=coid,
        contract=CONTRACT,
        side=kw.pop("side", "buy"),
        quantity=kw.pop("quantity", 1),
        order_type=kw.pop("order_type", "market"),
        decided_at=decided,
        **kw,
    )
    broker.place_order(command)
    expected = "working" if command.order_type == "limit" else "filled"

    def there() -> str | None:
        found = broker.order(QueryOrder(venue.account, coid))
        return found.status if found is not None and found.status == expected else None

    return str(wait_until(there, timeout=15, what=f"{coid} {expected} at {venue.name}"))


def reconcile(rig: Fleet, task: str, session_id: str) -> str:
    """One pass of a reconcile task on a real worker; its report line."""
    result = rig.app.send_task(task, args=[session_id], queue="reconcile")
    return str(result.get(timeout=TASK_TIMEOUT_S))


def fill_rows(rig: Fleet) -> list[tuple[str, int, Decimal]]:
    with Session(rig.engine) as db:
        rows = db.execute(
            select(OrderRow.client_order_id, FillRow.quantity, FillRow.price)
            .join(OrderRow, FillRow.order_id == OrderRow.id)
            .order_by(FillRow.id)
        ).all()
    return [(coid, qty, price) for coid, qty, price in rows]


def messages(rig: Fleet, session_id: str, kind: str = "reconciliation") -> list[str]:
    return [e.message for e in rig.events(session_id, kind)]  # type: ignore[arg-type]


def statuses(rig: Fleet) -> dict[str, tuple[str, bool]]:
    return {row.client_order_id: (row.status, row.external) for row in rig.sql_orders()}


# ----------------------------------------------------------------------------- reconciliation


@pytest.mark.parametrize("by", ["orders-pass", "positions-beat"])
def test_a_missed_fill_is_applied_once(
    venue: FleetVenue, by: str, redis_url: str, tmp_path: Path
) -> None:
    """The session sent an order and the broker filled it, but the fill never came back (the
    orders worker was down): an orders pass (``orders-pass``), or beat's positions passes
    delivering the account's fills (``positions-beat``), apply it once; the passes after it
    find the session in sync and change nothing."""
    rig = fleet(venue, redis_url, tmp_path, reconcile_grace_s=0, reconcile_positions_interval_s=1.0)
    with rig:
        sid = create(rig, venue, "missed")
        rig.start_worker(queues=("ticks", "reconcile"))  # no orders worker: fills stay out
        last = prime(rig, venue)
        decided = print_at(rig, venue, last + timedelta(seconds=1), "1680.00", "1679.75", "1680.00")
        coid = client_order_id(sid, 1, 0)
        rig.local_order(sid, coid)
        assert place_own(rig, venue, sid, coid, decided) == "filled"
        assert rig.quantity(sid) == 0, "nothing brought the fill back yet"

        if by == "orders-pass":
            first = reconcile(rig, RECONCILE_ORDERS, sid)
            assert coid in first and "filled at the broker" in first, first
        else:
            rig.start_beat()
            wait_until(lambda: rig.quantity(sid) == 1, 30, what="the fill delivered by beat")
            checks = rig.reconcile_meta(sid).checks
            wait_until(lambda: rig.reconcile_meta(sid).checks >= checks + 2, 30, what="2 passes")
            rig.stop_beats()
        second = reconcile(rig, RECONCILE_ORDERS, sid)
        positions = reconcile(rig, RECONCILE_POSITIONS, sid)
        state = rig.state(sid)
        broker_positions = venue.positions(rig)
        cash = venue.broker(rig).balance(QueryBalance(venue.account)).cash

    applied = {"orders-pass": [f"order {coid} filled at the broker: fills applied"]}
    assert messages(rig, sid) == applied.get(by, [])
    assert second == f"{sid}: in sync (0 open)"
    assert positions == f"{sid}: in sync (1)"
    assert state.open_position is not None
    assert (state.open_position.quantity, state.open_position.average_price) == (
        1,
        Decimal("1680.00"),
    )
    assert [(t.client_order_id, t.quantity, t.price, t.time) for t in state.trades] == [
        (coid, 1, Decimal("1680.00"), decided)
    ]
    assert state.orders == {}
    assert fill_rows(rig) == [(coid, 1, Decimal("1680.00"))]
    assert statuses(rig) == {coid: ("filled", False)}
    assert broker_positions == {CONTRACT: 1}
    assert cash == STARTING_CASH - COMMISSION
    assert venue.orders_created(rig) == 1


def test_a_fill_behind_the_sessions_back_is_corrected_by_the_beat(
    venue: FleetVenue, redis_url: str, tmp_path: Path
) -> None:
    """An order placed outside tradefleet fills at the broker (2 bought at the ask, 1680.25,
    of a print at 1680.00): beat's positions pass corrects the session within a cycle, at the
    broker's average (not the market's last price) and cash, with one event; the passes after
    it find the session in sync."""
    interval = 1.0
    rig = fleet(
        venue, redis_url, tmp_path, reconcile_positions_interval_s=interval, reconcile_grace_s=0.5
    )
    with rig:
        sid = create(rig, venue, "drift")
        rig.start_worker(queues=("ticks", "reconcile"), concurrency=2)
        last = prime(rig, venue)
        rig.start_beat()
        wait_until(lambda: rig.reconcile_meta(sid).checks >= 1, 30, what="a first pass by beat")
        assert rig.quantity(sid) == 0
        decided = print_at(rig, venue, last + timedelta(seconds=1), "1680.00", "1680.00", "1680.25")
        outsider = venue.external_order(rig, "buy", 2, "market", decided)
        wait_until(lambda: venue.positions(rig) == {CONTRACT: 2}, 15, what="the outside fill")
        wait_until(lambda: rig.quantity(sid) == 2, 3 * interval + 15, what="the correction")
        checks = rig.reconcile_meta(sid).checks
        wait_until(lambda: rig.reconcile_meta(sid).checks >= checks + 2, 30, what="two passes more")
        state = rig.state(sid)
        cash = venue.broker(rig).balance(QueryBalance(venue.account)).cash
        events = rig.events(sid, "reconciliation")
        created = venue.orders_created(rig)

    assert state.open_position is not None
    assert state.open_position.average_price == Decimal("1680.25")
    assert state.account_balance == cash == STARTING_CASH - 2 * COMMISSION
    (event,) = events
    assert (event.severity, event.message) == ("warning", "position corrected from 0 to 2")
    assert (event.details["local"], event.details["broker"]) == (0, 2)
    assert state.trades == () and statuses(rig) == {}, f"{outsider} is not the session's"
    assert created == 1


def test_an_external_order_is_adopted_and_an_order_unknown_there_is_lost(
    venue: FleetVenue, redis_url: str, tmp_path: Path
) -> None:
    """An order open at the broker that tradefleet never sent is adopted as external (a row
    marked external and a working copy); an order open here that the broker never heard of
    is marked lost; when the market reaches the adopted order it fills at the broker and the
    next orders pass applies its fill once."""
    rig = fleet(venue, redis_url, tmp_path, reconcile_grace_s=0)
    with rig:
        sid = create(rig, venue, "adopter")
        rig.start_worker(queues=("ticks", "reconcile"))  # no orders worker: fills stay out
        last = prime(rig, venue)
        outsider = venue.external_order(rig, "sell", 1, "limit", last, Decimal("3000.00"))
        rig.local_order(sid, "absent-there")
        broker = venue.broker(rig)
        open_there = [o.client_order_id for o in broker.open_orders(QueryOpenOrders(ACCOUNT))]
        assert open_there == [outsider]

        first = reconcile(rig, RECONCILE_ORDERS, sid)
        after_first = statuses(rig)
        working = sorted(rig.state(sid).orders)
        events = messages(rig, sid)
        second = reconcile(rig, RECONCILE_ORDERS, sid)
        events_after_second = len(messages(rig, sid))

        print_at(rig, venue, last + timedelta(seconds=1), "3000.00", "2999.75", "3000.00")

        def applied() -> str | None:
            """An orders pass once the broker filled the order on the print (the paper
            broker when the pass asks it to match; the local server by itself)."""
            line = reconcile(rig, RECONCILE_ORDERS, sid)
            return line if "filled at the broker" in line else None

        third = wait_until(applied, 30, interval=0.2, what=f"{outsider}'s fill applied")
        fourth = reconcile(rig, RECONCILE_ORDERS, sid)
        final = rig.state(sid)
        final_events = messages(rig, sid)
        broker_positions = venue.positions(rig)
        created = venue.orders_created(rig)

    assert after_first == {"absent-there": ("lost", False), outsider: ("working", True)}, first
    assert working == [outsider]
    assert sorted(events) == sorted(
        [
            "order absent-there is unknown to the broker: marked lost",
            f"external order {outsider} adopted",
        ]
    )
    assert second == f"{sid}: in sync (1 open)"
    assert events_after_second == len(events)
    assert f"{outsider} filled at the broker: 1 missed fill(s) applied" in third, third
    assert fourth == f"{sid}: in sync (0 open)"
    assert len([m for m in final_events if "filled at the broker" in m]) == 1, final_events
    assert final.orders == {}
    assert final.open_position is not None
    assert (final.open_position.quantity, final.open_position.average_price) == (
        -1,
        Decimal("3000.00"),
    )
    assert [(t.client_order_id, t.quantity, t.price) for t in final.trades] == [
        (outsider, -1, Decimal("3000.00"))
    ]
    assert fill_rows(rig) == [(outsider, 1, Decimal("3000.00"))]
    assert broker_positions == {CONTRACT: -1}
    assert created == 1


def test_an_external_order_is_only_flagged_when_adoption_is_off(
    venue: FleetVenue, redis_url: str, tmp_path: Path
) -> None:
    """With adoption switched off, an order open at the broker that tradefleet never sent is
    flagged once with an event, and left alone: no row, no working copy, still open there."""
    rig = fleet(venue, redis_url, tmp_path, reconcile_grace_s=0, adopt_external_orders=False)
    with rig:
        sid = create(rig, venue, "flagger")
        rig.start_worker(queues=("ticks", "reconcile"))
        last = prime(rig, venue)
        outsider = venue.external_order(rig, "buy", 1, "limit", last, Decimal("1000.00"))
        first = reconcile(rig, RECONCILE_ORDERS, sid)
        second = reconcile(rig, RECONCILE_ORDERS, sid)
        broker = venue.broker(rig)
        open_there = [o.client_order_id for o in broker.open_orders(QueryOpenOrders(ACCOUNT))]
        events = messages(rig, sid)
        state = rig.state(sid)

    reason = "external order names no session; adoption is switched off"
    assert first == f"{sid}: {outsider} flagged: {reason}"
    assert second == f"{sid}: in sync (0 open)"
    (event,) = events
    assert event.startswith(f"external order {outsider}:"), event
    assert state.orders == {} and statuses(rig) == {}
    assert open_there == [outsider]


def test_a_broker_that_cannot_answer_is_never_read_as_flat(
    venue: FleetVenue, redis_url: str, tmp_path: Path
) -> None:
    """The session holds 1 at the broker. The broker stops answering (the paper broker's
    Redis unreachable; Tradovate in a maintenance window): beat's positions passes fail, say
    so in an event, block entries after 3 failures in a row and never move the position; an
    orders pass reports the failure and changes nothing. When the broker answers again, the
    session is in sync, unblocked, with no correction."""
    rig = fleet(
        venue,
        redis_url,
        tmp_path,
        reconcile_positions_interval_s=1.0,
        reconcile_max_failures=3,
        reconcile_rechecks=0,
        reconcile_grace_s=0,
    )
    with rig:
        sid = create(rig, venue, "blind")
        rig.start_worker(queues=("ticks",))
        last = prime(rig, venue)
        decided = print_at(rig, venue, last + timedelta(seconds=1), "1680.00", "1679.75", "1680.00")
        rig.give_position(sid, venue.account, 1, decided)
        assert venue.positions(rig) == {CONTRACT: 1}
        seen: set[int] = set()

        def blocked() -> bool:
            seen.add(rig.quantity(sid))
            return rig.reconcile_meta(sid).entries_blocked

        with venue.outage():
            blind = rig.start_worker(queues=("reconcile",), env=venue.outage_env())
            rig.start_beat()
            wait_until(blocked, timeout=60, interval=0.05, what="entries blocked")
            record = rig.reconcile_meta(sid)
            orders_pass = reconcile(rig, RECONCILE_ORDERS, sid)
            seen.add(rig.quantity(sid))
            rig.stop_beats()
            blind.stop()
        during = messages(rig, sid)
        rig.start_worker(queues=("reconcile",))
        healed = reconcile(rig, RECONCILE_POSITIONS, sid)
        after = rig.reconcile_meta(sid)
        state = rig.state(sid)
        events = messages(rig, sid)
        broker_positions = venue.positions(rig)
        created = venue.orders_created(rig)

    assert seen == {1}, f"the position moved while the broker was out: {seen}"
    assert record.stale and record.failures >= 3, record
    assert "ServiceUnavailable" in record.last_error, record.last_error
    assert during[:2] == [
        "broker did not answer; position left as is",
        "entries blocked after 3 consecutive broker failures",
    ]
    assert not any("corrected" in m for m in events), events
    assert orders_pass.startswith(f"{sid}: failed: "), orders_pass
    assert healed == f"{sid}: in sync (1)"
    assert not after.entries_blocked and not after.stale and after.failures == 0
    assert events[-1] == "broker answers again; entries allowed"
    assert state.open_position is not None
    assert (state.open_position.quantity, state.open_position.average_price) == (
        1,
        Decimal("1680.00"),
    )
    assert broker_positions == {CONTRACT: 1}
    assert created == 1


# ----------------------------------------------------------------------------- a roll


BID, ASK = Decimal("1675.75"), Decimal("1676.00")
"""The touch of the last ESZ13 print before the roll."""


@pytest.mark.parametrize("held", [2, -1], ids=["long", "short"])
def test_a_session_holding_a_position_rolls_from_esz13_to_esh14(
    venue: FleetVenue, held: int, redis_url: str, tmp_path: Path
) -> None:
    """A session holding ``held`` ESZ13 (entered at the touch of a print: bought at its ask,
    sold at its bid) rolls through the chain: the close leaves ESZ13 at the other side of
    that touch (what the broker had when the close went out, and the next print's price),
    the open enters ESH14 at its first print, 1670.00; the roll ends ``done``, the session
    holds ``held`` ESH14 at 1670.00 with its candles moved by the spread, the money is exact,
    and the broker holds exactly the session's position after creating three orders."""
    size, long = abs(held), held > 0
    entry, exit_ = (ASK, BID) if long else (BID, ASK)
    rig = fleet(venue, redis_url, tmp_path)
    with rig:
        sid = create(rig, venue, "roller")
        rig.start_roll_worker()
        last = prime(rig, venue, 400)
        decided = print_at(rig, venue, last + timedelta(seconds=1), str(ASK), str(BID), str(ASK))
        rig.give_position(sid, venue.account, held, decided)
        before = rig.state(sid)
        roll = rig.start_roll(sid)
        assert roll.decided_at == decided + timedelta(milliseconds=1)
        prices = Prices(exit_, Decimal("1670.00"))
        rig.price(decided, prices)
        done = rig.wait_status(roll.id, "done", "failed", "needs_operator", timeout=90)
        after = rig.state(sid)
        broker_positions = venue.positions(rig)
        broker = venue.broker(rig)
        close = broker.order(QueryOrder(venue.account, f"roll-{roll.id}-close"))
        open_ = broker.order(QueryOrder(venue.account, f"roll-{roll.id}-open"))
        created = venue.orders_created(rig)
        cash = broker.balance(QueryBalance(venue.account)).cash

    assert (done.status, done.step, done.quantity) == ("done", "done", held), done.error
    assert (done.close_fill_price, done.open_fill_price) == (prices.old, prices.new)
    assert_moved(rig, sid, before, after, prices)
    assert after.open_position is not None
    assert (after.open_position.contract, after.open_position.quantity) == (NEW_CONTRACT, held)
    assert after.open_position.average_price == prices.new
    realized = (prices.old - entry) * held * POINT_VALUE
    assert after.account_pnl_info.realized == realized
    assert realized == (Decimal("-25.00") if long else Decimal("-12.50"))
    assert broker_positions == {NEW_CONTRACT: held}
    assert close is not None and open_ is not None
    assert (close.contract, close.side, close.quantity, close.status) == (
        CONTRACT,
        "sell" if long else "buy",
        size,
        "filled",
    )
    assert (open_.contract, open_.side, open_.quantity, open_.status) == (
        NEW_CONTRACT,
        "buy" if long else "sell",
        size,
        "filled",
    )
    assert (close.average_fill_price, open_.average_fill_price) == (prices.old, prices.new)
    assert created == 3
    assert cash == STARTING_CASH + realized - 3 * size * COMMISSION
    rows = {row.client_order_id: row for row in rig.sql_orders(session_id=sid)}
    assert (rows[f"roll-{roll.id}-close"].status, rows[f"roll-{roll.id}-open"].status) == (
        "filled",
        "filled",
    )
    assert any(f"roll {roll.id} done" in m for m in messages(rig, sid, "roll"))


def assert_moved(
    rig: RollRig, sid: str, before: SessionState, after: SessionState, prices: Prices
) -> None:
    """The session trades the new contract: its details, candle key, feed, SQL row and
    subscription moved; its candles are back-adjusted by the spread."""
    assert after.session.contract == NEW_CONTRACT == after.contract_details.symbol
    assert after.candle_key == f"{NEW_CONTRACT}:1m"
    assert after.market_data_source.args["instrument"] == NEW_CONTRACT
    assert rig.session_row_contract(sid) == NEW_CONTRACT
    assert (after.rolling, after.rolling_close_order_id, after.rolling_close_qty) == (
        False,
        None,
        None,
    )
    assert after.trading
    assert sid in rig.subscribers(NEW_CONTRACT) and sid not in rig.subscribers(CONTRACT)
    old = {c.start: c for c in before.candles}
    assert old
    moved = [c for c in after.candles if c.start in old]
    assert moved
    for candle in moved:
        assert candle.close == old[candle.start].close + prices.spread


# ----------------------------------------------------------------------------- recovery


def drop_every_tf_key(client: redis.Redis) -> int:
    """The sessions' whole Redis world lost (states, ready set, fill cursors, guards, the
    Tradovate adapter's token and claims); the broker's truth is elsewhere (the paper
    broker's db 1, the Tradovate server's own process)."""
    keys = list(client.scan_iter(match="tf:*", count=1_000))
    return int(cast(int, client.delete(*keys)))


def test_a_session_whose_redis_is_lost_is_rebuilt_from_the_broker(
    venue: FleetVenue, redis_url: str, tmp_path: Path
) -> None:
    """The session bought 1 (its fill applied) and has a limit order resting; then it sent a
    second buy that filled at the broker while nothing brought the fill back, and the
    sessions' Redis is lost. Beat's positions pass meets the session without state and a
    worker rebuilds it from SQL and the broker: position 2 at the broker's average, its
    balance, the resting order, both fills once, the signal sequence after every id used."""
    rig = fleet(
        venue,
        redis_url,
        tmp_path,
        reconcile_positions_interval_s=1.0,
        reconcile_orders_interval_s=600.0,
        sweep_interval_s=1.0,
    )
    with rig:
        sid = create(rig, venue, "amnesiac")
        rig.start_worker(queues=("ticks", "orders", "reconcile"), concurrency=2)
        last = prime(rig, venue)
        first = print_at(rig, venue, last + timedelta(seconds=1), "1680.00", "1679.75", "1680.00")
        rig.give_position(sid, venue.account, 1, first)
        resting, missed = client_order_id(sid, 2, 0), client_order_id(sid, 3, 0)
        rig.local_order(sid, resting, order_type="limit", limit="1000.00", working_copy=False)
        limit = Decimal("1000.00")
        assert place_own(rig, venue, sid, resting, first, order_type="limit", limit_price=limit)
        second = print_at(rig, venue, first + timedelta(seconds=1), "1682.00", "1681.75", "1682.00")
        rig.local_order(sid, missed, status="sent", working_copy=False)
        assert place_own(rig, venue, sid, missed, second) == "filled"

        assert drop_every_tf_key(rig.client) > 0
        assert not rig.store.exists(sid)
        assert venue.positions(rig) == {CONTRACT: 2}, "the broker's truth is not the sessions'"
        rig.start_beat()
        wait_until(lambda: rig.events(sid, "recovery"), 60, interval=0.1, what="the recovery")
        print_at(rig, venue, second + timedelta(seconds=1), "1682.50", "1682.25", "1682.50")
        wait_until(lambda: rig.reconcile_meta(sid).checks >= 2, 30, what="positions passes")
        state = rig.state(sid)
        (event,) = rig.events(sid, "recovery")
        broker = venue.broker(rig)
        cash = broker.balance(QueryBalance(venue.account)).cash
        broker_positions = venue.positions(rig)
        progress = rig.progress("amnesiac")
        created = venue.orders_created(rig)
        corrections = [m for m in messages(rig, sid) if "corrected" in m]
        with Session(rig.engine) as db:
            fill_count = db.scalar(select(func.count()).select_from(FillRow))

    average = (Decimal("1680.00") + Decimal("1682.00")) / 2
    assert state.open_position is not None
    assert (state.open_position.quantity, state.open_position.average_price) == (2, average)
    assert state.account_balance == cash == STARTING_CASH - 2 * COMMISSION
    assert {coid: o.status for coid, o in state.orders.items()} == {resting: "working"}
    assert [(t.client_order_id, t.quantity, t.price) for t in state.trades] == [
        (f"test-entry-{venue.account}", 1, Decimal("1680.00")),
        (missed, 1, Decimal("1682.00")),
    ]
    assert fill_count == 2
    assert statuses(rig) == {
        f"test-entry-{venue.account}": ("filled", False),
        resting: ("working", False),
        missed: ("filled", False),
    }
    assert progress.signal_seq == 3
    assert (event.details["position"], Decimal(event.details["balance"])) == (2, cash)
    assert broker_positions == {CONTRACT: 2}
    assert corrections == []
    assert created == 3
    assert state.latest_partial_candle is not None
    assert state.latest_partial_candle.close == Decimal("1682.50"), "it reads its stream again"
