"""The operator's functions on real Redis, PostgreSQL and the paper broker (no workers):
flatten takes a session to flat at the broker; stop refuses a session holding a position or an
order and takes a flat one out of everything that serves active sessions, start puts it back;
halt, resume and wind-down; each leaves an ``operator`` event naming who acted, and a refusal
writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.tables import EventRow, OrderRow
from tests.kit.desk import Desk
from tests.kit.metrics import counted
from tests.kit.snapshots import CONTRACT
from trading.exceptions import BadInput, UnknownSession
from workers.db.roll_rows import create_roll
from workers.db.session_rows import get_session_row
from workers.dispatch.recovery import missing_sessions
from workers.metrics.catalog import ORDERS
from workers.operations.flatten import flatten_session
from workers.operations.halt import halt, resume, wind_down
from workers.operations.stop import start_session, stop_session
from workers.reconcile.position_check import reconcile_positions
from workers.reconcile.schedule import active_sessions as reconciled_sessions
from workers.risk import accounts as risk_accounts
from workers.risk.book import RiskBook
from workers.state.store import StateChanges

pytestmark = pytest.mark.integration

ACCOUNT = "ACC-OPS"


@pytest.fixture
def desk(redis_url: str, pg_url: str) -> Iterator[Desk]:
    with Desk(redis_url, pg_url) as found:
        yield found


def counts(desk: Desk) -> tuple[int, int]:
    """(event rows, order rows): what a refused action must leave as it was."""
    with Session(desk.engine) as db:
        events = db.scalar(select(func.count()).select_from(EventRow)) or 0
        orders = db.scalar(select(func.count()).select_from(OrderRow)) or 0
    return int(events), int(orders)


def resting_entry(desk: Desk, session_id: str) -> str:
    """A buy limit entry far below the market, working at the broker and in the session."""
    return desk.order(session_id, ACCOUNT, "limit", "1000")


def operator_events(desk: Desk, session_id: str | None = None) -> list[EventRow]:
    return [e for e in desk.events("operator") if e.session_id == session_id]


def test_flatten_cancels_entries_and_takes_the_session_flat_at_the_broker(desk: Desk) -> None:
    sid = desk.create("flat-me", ACCOUNT)
    desk.hold(sid, ACCOUNT)
    resting = resting_entry(desk, sid)
    assert desk.broker_positions(ACCOUNT) == {CONTRACT: 1}
    before = counted(desk.rt.redis, ORDERS)

    report = flatten_session(desk.rt, sid, "alice")

    assert report.cancelled == [resting]
    assert report.exit is not None
    assert desk.broker_positions(ACCOUNT) == {}
    assert desk.position(sid) == 0
    exits = [o for o in desk.orders(sid) if o.intent == "exit"]
    assert [(o.client_order_id, o.side, o.quantity, o.status) for o in exits] == [
        (report.exit, "sell", 1, "filled")
    ]
    assert resting not in desk.rt.store.load(sid).orders
    assert {o.client_order_id: o.status for o in desk.orders(sid)}[resting] == "cancelled"
    after = counted(desk.rt.redis, ORDERS)
    gained = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    assert gained == {"created": 1, "cancelled": 1, "filled": 1}
    (event,) = operator_events(desk, sid)
    assert event.details["user"] == "alice"
    assert event.message.endswith("(by alice)") and "flattened" in event.message

    again = flatten_session(desk.rt, sid, "alice")
    assert again.exit is None and again.cancelled == []


def test_unknown_session_is_refused_and_nothing_is_written(desk: Desk) -> None:
    desk.create("other", ACCOUNT)
    before = counts(desk)
    for action in (flatten_session, stop_session, start_session):
        with pytest.raises(UnknownSession, match="unknown session: no-such-id"):
            action(desk.rt, "no-such-id", "alice")
    assert counts(desk) == before


def test_stop_refuses_a_position_or_an_order_then_stops_a_flat_session(desk: Desk) -> None:
    sid = desk.create("stop-me", ACCOUNT)
    desk.hold(sid, ACCOUNT)
    before = counts(desk)
    with pytest.raises(BadInput, match=r"holds a position of 1.*flatten it first"):
        stop_session(desk.rt, sid, "alice")
    assert counts(desk) == before
    row = get_session_row(desk.engine, sid)
    assert row is not None and row.status == "active"
    assert desk.rt.store.load(sid).trading is True

    flatten_session(desk.rt, sid, "alice")
    resting = resting_entry(desk, sid)
    before = counts(desk)
    with pytest.raises(BadInput, match=rf"1 open order\(s\) \({resting}\).*flatten it first"):
        stop_session(desk.rt, sid, "alice")
    assert counts(desk) == before

    flatten_session(desk.rt, sid, "alice")
    assert sid in reconciled_sessions(desk.rt)
    report = stop_session(desk.rt, sid, "bob")

    assert (report.status, report.trading) == ("stopped", False)
    row = get_session_row(desk.engine, sid)
    assert row is not None and row.status == "stopped"
    assert desk.rt.store.load(sid).trading is False
    assert sid not in reconciled_sessions(desk.rt)
    assert sid not in [r.id for r in risk_accounts.active_sessions(desk.engine)]
    assert reconcile_positions(desk.rt, sid).line().endswith("skipped: session is stopped")
    desk.rt.store.delete(sid)
    assert sid not in missing_sessions(desk.rt.redis, desk.engine)
    stopped = operator_events(desk, sid)[-1]
    assert stopped.message == "session stopped (by bob)" and stopped.details["user"] == "bob"


def test_start_makes_a_stopped_session_active_and_trading_again(desk: Desk) -> None:
    sid = desk.create("restart-me", ACCOUNT)
    stop_session(desk.rt, sid, "alice")
    before = counts(desk)
    with pytest.raises(BadInput, match="already stopped"):
        stop_session(desk.rt, sid, "alice")
    assert counts(desk) == before

    report = start_session(desk.rt, sid, "carol")

    assert (report.status, report.trading) == ("active", True)
    row = get_session_row(desk.engine, sid)
    assert row is not None and row.status == "active"
    assert desk.rt.store.load(sid).trading is True
    assert sid in reconciled_sessions(desk.rt)
    started = operator_events(desk, sid)[-1]
    assert started.message == "session started (by carol)"
    assert started.details == {"name": "restart-me", "was": "stopped", "user": "carol"}
    before = counts(desk)
    with pytest.raises(BadInput, match="already active and trading"):
        start_session(desk.rt, sid, "carol")
    assert counts(desk) == before


def test_start_restarts_an_active_session_that_stopped_trading(desk: Desk) -> None:
    sid = desk.create("halted-by-error", ACCOUNT)
    with desk.rt.store.locked(sid, wait_s=5) as lease:
        desk.rt.store.write(lease, StateChanges.of({"trading": False}))
    start_session(desk.rt, sid, "alice")
    assert desk.rt.store.load(sid).trading is True


def test_stop_flatten_and_start_are_refused_while_the_session_rolls(desk: Desk) -> None:
    sid = desk.create("rolling", ACCOUNT)
    roll = create_roll(desk.engine, sid, CONTRACT, "ESH14", datetime.now(UTC))
    before = counts(desk)
    for action in (stop_session, flatten_session, start_session):
        with pytest.raises(BadInput, match=rf"roll {roll.id} is running.*abort the roll"):
            action(desk.rt, sid, "alice")
    assert counts(desk) == before
    assert desk.rt.store.load(sid).trading is True


def test_wind_down_leaves_a_session_in_a_roll_to_its_roll_and_says_so(desk: Desk) -> None:
    """The roll's own close and open move its position: an exit beside them could leave it the
    other way round, so a wind-down does not flatten it and its report says so."""
    rolling = desk.create("rolling", ACCOUNT)
    other = desk.create("other", "ACC-OPS-2")
    desk.hold(rolling, ACCOUNT)
    desk.hold(other, "ACC-OPS-2")
    create_roll(desk.engine, rolling, CONTRACT, "ESH14", datetime.now(UTC))

    down = wind_down(desk.rt, "alice")

    assert down.in_roll == [rolling] and len(down.exits) == 1
    assert "1 session(s) in a roll NOT flattened" in down.line("wound down")
    assert desk.broker_positions(ACCOUNT) == {CONTRACT: 1} and desk.position(rolling) == 1
    assert desk.broker_positions("ACC-OPS-2") == {} and desk.position(other) == 0
    assert not [o for o in desk.orders(rolling) if o.intent == "exit"]
    (event,) = operator_events(desk, rolling)
    assert event.details["not_flattened"].startswith("roll ")


def test_halt_resume_and_wind_down_name_who_acted(desk: Desk) -> None:
    one = desk.create("one", ACCOUNT)
    two = desk.create("two", "ACC-OPS-2")
    desk.hold(one, ACCOUNT)
    book = RiskBook(desk.rt.redis, desk.settings.risk)

    report = halt(desk.rt, ACCOUNT, False, "alice")
    assert report.accounts == [ACCOUNT] and report.exits == []
    assert book.read(ACCOUNT).halted and not book.read("ACC-OPS-2").halted
    (summary,) = operator_events(desk)
    assert summary.message == f"halted {ACCOUNT}: 0 entry orders cancelled, 0 exits sent (by alice)"
    assert [e.message for e in operator_events(desk, one)] == ["halted (by alice)"]
    assert operator_events(desk, two) == []

    assert resume(desk.rt, ACCOUNT, "bob") == [ACCOUNT]
    assert not book.read(ACCOUNT).halted
    assert operator_events(desk)[-1].message == f"resumed {ACCOUNT} (by bob)"

    down = wind_down(desk.rt, "carol")
    assert sorted(down.accounts) == sorted([ACCOUNT, "ACC-OPS-2"])
    assert len(down.exits) == 1
    assert desk.broker_positions(ACCOUNT) == {}
    assert desk.position(one) == 0
    assert book.read(ACCOUNT).halted and book.read("ACC-OPS-2").halted
    last = operator_events(desk)[-1]
    assert last.message.startswith("halted and flattened ACC-OPS, ACC-OPS-2: ")
    assert last.details["user"] == "carol" and last.details["exits"] == 1
    assert [e.message for e in operator_events(desk, two)] == ["halted and flattened (by carol)"]
