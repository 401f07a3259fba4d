"""An entry waits for a live broker while its session holds a protective stop it saw touched
whose fill has not come back: the broker may not have filled that stop, and the entry would add
to a position still held. The paper broker fills a touched stop in data time: nothing waits."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from models.state import OrderStatus, WorkingOrder
from tests.kit.fleet import CONTRACT, Fleet
from tests.kit.replay import SessionPlan, first_tick_time, replay_ticks
from tests.kit.tradovate_local import LocalTradovate, fleet_overrides
from trading.exceptions import RetryLater
from trading.intents import client_order_id
from trading.market import epoch_ms
from trading.stops import StopOut
from workers.brokers.commands import Fill
from workers.db.order_rows import get_order_row, insert_order_if_absent, update_order_row
from workers.orders.fills import apply_fill_to_session
from workers.orders.send import send_order
from workers.state.store import StateChanges
from workers.stops.sync import stop_id
from workers.stops.touches import TOUCH_GRACE_S, settle_unfilled_touch

pytestmark = pytest.mark.integration

ACCOUNT = "ACC-HOLD"


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[LocalTradovate]:
    local = LocalTradovate.start(
        tmp_path, "--market-redis", redis_url, "--account", f"{ACCOUNT}:100000"
    )
    yield local
    local.stop()


def decide_entry(rig: Fleet, session_id: str) -> str:
    """An entry's working copy and row, as the tick step writes them (not sent)."""
    decided = first_tick_time()
    entry = WorkingOrder(
        client_order_id=client_order_id(session_id, 1, 0),
        contract=CONTRACT,
        side="buy",
        quantity=1,
        order_type="market",
        intent="entry",
        status="new",
        created_at=decided,
    )
    with rig.store.locked(session_id, wait_s=5) as lease:
        orders = {**lease.value("orders"), entry.client_order_id: entry}
        rig.store.write(lease, StateChanges.of({"orders": orders}))
    assert insert_order_if_absent(rig.engine, session_id, entry, decided, "day")
    return entry.client_order_id


def set_touched(rig: Fleet, session_id: str, touched: bool) -> None:
    """The session's ``_progress`` with (or without) a stop it saw touched, fill not back."""
    key = f"tf:{{{session_id}}}:state"
    raw = rig.client.hget(key, PROGRESS_FIELD)
    progress = TickProgress.from_json(raw.decode() if raw else None)
    outs = (StopOut(1, Decimal("1674.00"), -1, 0),) if touched else ()
    rig.client.hset(key, PROGRESS_FIELD, replace(progress, stops_out=outs).to_json())


def held_session(rig: Fleet, stop_status: OrderStatus) -> tuple[str, str, str]:
    """A session at the live broker holding a position whose stop (its row ``stop_status``)
    it saw touched, with an entry decided since: (session id, stop id, entry id)."""
    plan = SessionPlan("hold", ACCOUNT, "breakout", (("lookback", "500"),), broker="tradovate")
    sid = rig.create_sessions([plan])["hold"]
    rig.publish_replay(replay_ticks()[:20])
    stop = WorkingOrder(
        client_order_id=stop_id(sid, 1),
        contract=CONTRACT,
        side="sell",
        quantity=1,
        order_type="stop",
        intent="exit",
        status="new",
        created_at=first_tick_time(),
        stop_price=Decimal("1674.00"),
    )
    assert insert_order_if_absent(rig.engine, sid, stop, first_tick_time(), "gtc")
    update_order_row(rig.engine, stop.client_order_id, stop_status, "1")
    coid = decide_entry(rig, sid)
    set_touched(rig, sid, True)
    return sid, stop.client_order_id, coid


def dropped_unsent(rig: Fleet, server: LocalTradovate, sid: str, coid: str) -> list[str]:
    """Check the entry ``coid`` was cancelled without reaching the broker and the touch is
    gone; the session's risk event messages."""
    entry_row = get_order_row(rig.engine, coid)
    assert rig.progress("hold").stops_out == ()
    assert entry_row is not None and entry_row.status == "cancelled"
    assert coid not in rig.state(sid).orders
    assert server.control("GET", "state")["commands"] == [], "nothing was sent to the broker"
    messages = [e.message for e in rig.events(sid, "risk")]
    assert any(m.startswith(f"entry {coid} dropped") for m in messages), messages
    return messages


@pytest.mark.parametrize("broker", ["paper", "tradovate"])
def test_an_entry_waits_for_an_unconfirmed_stop_touch_only_at_a_live_broker(
    broker: str, request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> None:
    overrides = {}
    if broker == "tradovate":
        overrides = fleet_overrides(request.getfixturevalue("server"))
    with Fleet(redis_url, tmp_path / "fleet", **overrides) as rig:
        plan = SessionPlan("hold", ACCOUNT, "breakout", (("lookback", "500"),), broker=broker)
        sid = rig.create_sessions([plan])["hold"]
        rig.publish_replay(replay_ticks()[:20])
        coid = decide_entry(rig, sid)
        set_touched(rig, sid, True)
        if broker == "tradovate":
            with pytest.raises(RetryLater, match="waits"):
                send_order(rig.rt, sid, coid)
            row = get_order_row(rig.engine, coid)
            assert row is not None and row.status == "new", "nothing sent while touched"
            set_touched(rig, sid, False)
        outcome = send_order(rig.rt, sid, coid)
        row = get_order_row(rig.engine, coid)
    assert outcome.status in {"filled", "working"}
    assert row is not None and row.status != "new"


def test_a_touch_the_live_broker_never_filled_is_dropped_and_its_entry_with_it(
    server: LocalTradovate, redis_url: str, tmp_path: Path
) -> None:
    """The stop still works at the broker ``TOUCH_GRACE_S`` after a poll first saw it so: the
    touch is dropped (the session holds its position again, with an event), and the entry
    decided on it is cancelled unsent instead of adding to the position."""
    with Fleet(redis_url, tmp_path / "fleet", **fleet_overrides(server)) as rig:
        sid, stop, coid = held_session(rig, "working")
        row = get_order_row(rig.engine, stop)
        assert row is not None
        clock = [1_000.0]
        assert not settle_unfilled_touch(rig.store, rig.engine, sid, row, now=lambda: clock[0])
        clock[0] += TOUCH_GRACE_S - 1
        assert not settle_unfilled_touch(rig.store, rig.engine, sid, row, now=lambda: clock[0])
        clock[0] += 2
        assert settle_unfilled_touch(rig.store, rig.engine, sid, row, now=lambda: clock[0])
        assert rig.progress("hold").stops_out == ()
        outcome = send_order(rig.rt, sid, coid)
        assert outcome.status == "cancelled"
        messages = dropped_unsent(rig, server, sid, coid)
    assert any("still working at the broker" in m for m in messages), messages


def test_a_touch_of_a_stop_that_ended_unfilled_at_the_broker_is_dropped_and_its_entry_with_it(
    server: LocalTradovate, redis_url: str, tmp_path: Path
) -> None:
    """The stop the session saw touched was cancelled at the live broker before any fill (a
    move or an exit cancelled it): no poll of it is left to settle the touch, and the broker
    will never fill it. The entry held back by the touch settles it at once: the touch is
    dropped (the session holds its position again, with an event), and the entry decided on it
    is cancelled unsent instead of waiting until its retries run out."""
    with Fleet(redis_url, tmp_path / "fleet", **fleet_overrides(server)) as rig:
        sid, _, coid = held_session(rig, "cancelled")
        outcome = send_order(rig.rt, sid, coid)
        assert outcome.status == "cancelled"
        messages = dropped_unsent(rig, server, sid, coid)
    assert any("ended at the broker unfilled" in m for m in messages), messages


def test_a_touch_of_a_working_stop_still_holds_the_entry_back(
    server: LocalTradovate, redis_url: str, tmp_path: Path
) -> None:
    """A touch whose stop still works at the broker (its fill may yet come) is not dropped by
    the entry it holds back: the entry waits."""
    with Fleet(redis_url, tmp_path / "fleet", **fleet_overrides(server)) as rig:
        sid, _, coid = held_session(rig, "working")
        with pytest.raises(RetryLater, match="waits"):
            send_order(rig.rt, sid, coid)
        progress = rig.progress("hold")
        entry_row = get_order_row(rig.engine, coid)
    assert len(progress.stops_out) == 1
    assert entry_row is not None and entry_row.status == "new"


def test_a_touch_before_the_entrys_fill_at_the_broker_is_dropped_when_the_fill_comes(
    redis_url: str, tmp_path: Path
) -> None:
    """A live broker filled the entry after the session saw its stop touched (the session takes
    the stop as resting from its decision): that stop was not working at the broker when
    touched, so the touch is dropped as the entry's fill is applied, with an event."""
    with Fleet(redis_url, tmp_path / "fleet") as rig:
        plan = SessionPlan("early", ACCOUNT, "breakout", (("lookback", "500"),))
        sid = rig.create_sessions([plan])["early"]
        rig.publish_replay(replay_ticks()[:20])
        decided = first_tick_time()
        entry = WorkingOrder(
            client_order_id=client_order_id(sid, 1, 0),
            contract=CONTRACT,
            side="buy",
            quantity=1,
            order_type="market",
            intent="entry",
            status="working",
            created_at=decided,
            stop_price=Decimal("1674.00"),
        )
        with rig.store.locked(sid, wait_s=5) as lease:
            rig.store.write(lease, StateChanges.of({"orders": {entry.client_order_id: entry}}))
        assert insert_order_if_absent(rig.engine, sid, entry, decided, "day")
        touched_ms = epoch_ms(decided) + 1_000
        key = f"tf:{{{sid}}}:state"
        raw = rig.client.hget(key, PROGRESS_FIELD)
        progress = TickProgress.from_json(raw.decode() if raw else None)
        out = StopOut(1, Decimal("1674.00"), -1, touched_ms)
        rig.client.hset(key, PROGRESS_FIELD, replace(progress, stops_out=(out,)).to_json())
        fill = Fill(
            execution_id="X-1",
            client_order_id=entry.client_order_id,
            broker_order_id="B-1",
            account=ACCOUNT,
            session_id=sid,
            contract=CONTRACT,
            quantity=1,
            price=Decimal("1676.00"),
            commission=Decimal("2.50"),
            time=decided + timedelta(seconds=5),
        )
        broker = rig.rt.broker("paper", {"account": ACCOUNT})
        settings = rig.settings
        assert apply_fill_to_session(
            rig.store, rig.engine, broker, fill, settings.risk, settings.stops
        )
        after = rig.progress("early")
        held = rig.quantity(sid)
        marked = rig.client.get(f"tf:{{{sid}}}:unfilled-touch")
        messages = [e.message for e in rig.events(sid, "risk")]
    assert after.stops_out == ()
    assert held == 1
    assert marked is not None and marked.decode().startswith(f"{touched_ms}-")
    assert any("before entry" in m and "the position is held" in m for m in messages), messages
