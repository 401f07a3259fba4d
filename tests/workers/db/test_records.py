"""Rows round-trip exactly and the database itself refuses what must never be stored twice."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from models.state import (
    CollaboratorRef,
    ContractDetails,
    OrderTemplate,
    SessionInfo,
    SessionState,
    StrategyRef,
    WorkingOrder,
)
from models.tables import EventRow, FillRow, OrderRow, TradingSessionRow
from trading.exceptions import BadInput, UnknownSession
from workers.db.engines import engine_for, make_engine, upgrade
from workers.db.event_rows import list_events, record_event, record_events_once
from workers.db.order_rows import (
    OrderToWrite,
    get_order_row,
    insert_fill_if_absent,
    insert_order_if_absent,
    insert_orders_if_absent,
    status_after_fills,
    update_order_row,
)
from workers.db.session_rows import (
    create_session_row,
    find_session_row_by_name,
    get_session_row,
    list_session_rows,
    set_session_status,
)
from workers.ticks.events import step_events
from workers.ticks.step import StepEvent

pytestmark = pytest.mark.integration

DECIDED = datetime(2025, 3, 14, 14, 30, 0, 250_000, tzinfo=UTC)
PRICES = [Decimal("1773.25"), Decimal("0.00000001"), Decimal("-37.63"), Decimal("4321.98765432")]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def initial_state(name: str = "es-sma") -> SessionState:
    return SessionState(
        session=SessionInfo(
            id=str(uuid.uuid4()),
            name=name,
            account="DU123",
            product="ES",
            contract="ESM5",
            timeframe="5m",
            created_at=datetime(2025, 3, 14, 13, 0, 0, 123_456, tzinfo=UTC),
        ),
        strategy=StrategyRef(module="sma_cross", args={"fast": 10, "slow": 30}),
        market_data_source=CollaboratorRef(module="replay", args={"path": "ticks.csv"}),
        account_manager=CollaboratorRef(module="paper", args={"balance": "100000.00"}),
        contract_details=ContractDetails(
            symbol="ESM5", product="ES", multiplier=Decimal(50), tick_size=Decimal("0.25")
        ),
        candle_key="ESM5:5m",
        order_template=OrderTemplate(order_type="limit", quantity=2, time_in_force="gtc"),
    )


def new_session(db: Session | Engine, name: str = "es-sma") -> TradingSessionRow:
    return create_session_row(db, initial_state(name))


def new_order(session_id: str, client_order_id: str, **overrides: object) -> OrderRow:
    values: dict[str, object] = {
        "client_order_id": client_order_id,
        "session_id": session_id,
        "contract": "ESM5",
        "side": "buy",
        "quantity": 2,
        "order_type": "limit",
        "limit_price": Decimal("1773.25"),
        "time_in_force": "day",
        "status": "new",
        "intent": "entry",
        "decided_at": DECIDED,
    }
    values.update(overrides)
    return OrderRow(**values)


def fill(order_id: int, execution_id: str, price: Decimal) -> FillRow:
    return FillRow(
        execution_id=execution_id,
        order_id=order_id,
        quantity=1,
        price=price,
        commission=Decimal("1.1"),
        filled_at=DECIDED,
    )


def test_session_order_fill_event_round_trip_exactly(engine: Engine) -> None:
    with Session(engine) as db, db.begin():
        session = new_session(db)
        session_id = session.id
        order = new_order(session_id, "es-sma:1", stop_price=Decimal("0.00000001"))
        db.add(order)
        db.flush()
        for n, price in enumerate(PRICES):
            db.add(
                FillRow(
                    execution_id=f"exec-{n}",
                    order_id=order.id,
                    quantity=1,
                    price=price,
                    commission=Decimal("2.05"),
                    filled_at=DECIDED + timedelta(seconds=n),
                )
            )
        record_event(db, session_id, "reconciliation", "warning", "position corrected", {"was": 1})

    with Session(engine) as db:
        loaded = get_session_row(db, session_id)
        assert loaded is not None
        assert loaded.strategy_args == {"fast": 10, "slow": 30}
        assert (loaded.strategy_name, loaded.market_data_source, loaded.account_manager) == (
            "sma_cross",
            "replay",
            "paper",
        )
        assert loaded.market_data_args == {"path": "ticks.csv"}
        assert loaded.account_manager_args == {"balance": "100000.00"}
        assert loaded.order_template == {
            "order_type": "limit",
            "quantity": 2,
            "time_in_force": "gtc",
        }
        assert loaded.created_at == datetime(2025, 3, 14, 13, 0, 0, 123_456, tzinfo=UTC)
        assert loaded.status == "active"
        assert loaded.created_at.tzinfo is UTC
        assert find_session_row_by_name(db, "es-sma") is loaded
        assert [s.id for s in list_session_rows(db)] == [session_id]

        order = db.scalars(select(OrderRow)).one()
        assert order.limit_price == Decimal("1773.25")
        assert order.stop_price == Decimal("0.00000001")
        assert isinstance(order.limit_price, Decimal)
        assert order.decided_at == DECIDED
        assert order.decided_at is not None and order.decided_at.tzinfo is UTC

        fills = db.scalars(select(FillRow).order_by(FillRow.execution_id)).all()
        assert [f.price for f in fills] == PRICES
        assert all(isinstance(f.price, Decimal) and f.commission == Decimal("2.05") for f in fills)
        assert [f.filled_at for f in fills] == [DECIDED + timedelta(seconds=n) for n in range(4)]
        assert all(f.filled_at.tzinfo is UTC for f in fills)

        (event,) = list_events(db, session_id=session_id)
        assert (event.kind, event.severity, event.details) == (
            "reconciliation",
            "warning",
            {"was": 1},
        )


def test_non_utc_time_is_stored_as_the_same_instant_in_utc(engine: Engine) -> None:
    chicago = timezone(timedelta(hours=-5))
    with Session(engine) as db, db.begin():
        session_id = new_session(db).id
        db.add(
            new_order(session_id, "x:1", decided_at=datetime(2025, 3, 14, 9, 30, tzinfo=chicago))
        )
    with Session(engine) as db:
        order = db.scalars(select(OrderRow)).one()
        assert order.decided_at == datetime(2025, 3, 14, 14, 30, tzinfo=UTC)
        assert order.decided_at is not None and order.decided_at.tzinfo is UTC


def test_naive_datetime_is_refused(engine: Engine) -> None:
    with Session(engine) as db, db.begin():
        session_id = new_session(db).id
    with Session(engine) as db:
        db.add(new_order(session_id, "x:1", decided_at=datetime(2025, 3, 14, 9, 30)))
        with pytest.raises(StatementError) as caught:
            db.flush()
        assert isinstance(caught.value.orig, BadInput)


def test_duplicate_client_order_id_is_refused_by_the_database(engine: Engine) -> None:
    with Session(engine) as db, db.begin():
        session_id = new_session(db).id
        db.add(new_order(session_id, "es-sma:7"))
    with Session(engine) as db:
        db.add(new_order(session_id, "es-sma:7", side="sell"))
        with pytest.raises(IntegrityError, match=r"(?i)unique|duplicate"):
            db.flush()
    with Session(engine) as db:
        assert db.scalars(select(OrderRow.side)).all() == ["buy"]


def test_duplicate_execution_id_is_refused_by_the_database(engine: Engine) -> None:
    with Session(engine) as db, db.begin():
        order = new_order(new_session(db).id, "es-sma:1")
        db.add(order)
        db.flush()
        order_id = order.id
        db.add(
            FillRow(
                execution_id="E1",
                order_id=order_id,
                quantity=1,
                price=Decimal("1773.25"),
                commission=Decimal("1.1"),
                filled_at=DECIDED,
            )
        )
    with Session(engine) as db:
        db.add(
            FillRow(
                execution_id="E1",
                order_id=order_id,
                quantity=1,
                price=Decimal("1773.5"),
                commission=Decimal("1.1"),
                filled_at=DECIDED,
            )
        )
        with pytest.raises(IntegrityError, match=r"(?i)unique|duplicate"):
            db.flush()
    with Session(engine) as db:
        assert db.scalars(select(FillRow.price)).all() == [Decimal("1773.25")]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("side", "hold"),
        ("quantity", 0),
        ("status", "done"),
        ("intent", "hedge"),
        ("order_type", "moc"),
    ],
)
def test_check_constraints_refuse_bad_values(engine: Engine, column: str, value: object) -> None:
    with Session(engine) as db, db.begin():
        session_id = new_session(db).id
    with Session(engine) as db:
        db.add(new_order(session_id, "bad:1", **{column: value}))
        with pytest.raises(IntegrityError, match=r"(?i)check"):
            db.flush()


def test_limit_order_without_price_is_refused(engine: Engine) -> None:
    with Session(engine) as db, db.begin():
        session_id = new_session(db).id
    with Session(engine) as db:
        db.add(new_order(session_id, "bad:1", limit_price=None))
        with pytest.raises(IntegrityError, match=r"(?i)ck_orders_limit_has_price|check"):
            db.flush()


def test_raw_sql_bad_side_is_refused(engine: Engine) -> None:
    with Session(engine) as db, db.begin():
        session_id = new_session(db).id
    statement = text(
        "INSERT INTO orders (client_order_id, session_id, contract, side, quantity, order_type,"
        " time_in_force, status, intent, created_at, updated_at) VALUES"
        " ('raw:1', :sid, 'ESM5', 'long', 1, 'market', 'day', 'new', 'entry', :t, :t)"
    )
    with engine.connect() as connection, pytest.raises(IntegrityError):
        connection.execute(statement, {"sid": session_id, "t": DECIDED})


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with Session(engine) as db:
        db.add(new_order("no-such-session", "orphan:1"))
        with pytest.raises(IntegrityError):
            db.flush()


def test_records_helpers(engine: Engine) -> None:
    with Session(engine) as db, db.begin():
        first_id = new_session(db, "gc-breakout").id
        new_session(db, "es-sma")
        with pytest.raises(BadInput, match="already exists"):
            new_session(db, "es-sma")
        record_event(db, first_id, "roll", "info", "roll begun")
        record_event(
            db, None, "risk", "critical", "account heat above block level", {"heat": "0.31"}
        )
        record_event(db, first_id, "operator", "info", "stopped by operator")
        with pytest.raises(BadInput, match="unknown event kind"):
            record_event(db, None, "gossip", "info", "nope")  # type: ignore[arg-type]
    with Session(engine) as db:
        assert {s.name for s in list_session_rows(db)} == {"gc-breakout", "es-sma"}
        assert get_session_row(db, "missing") is None
        assert find_session_row_by_name(db, "missing") is None
        assert [e.message for e in list_events(db, session_id=first_id)] == [
            "roll begun",
            "stopped by operator",
        ]
        assert [e.message for e in list_events(db, kind="risk")] == [
            "account heat above block level"
        ]
        assert [e.message for e in list_events(db, limit=1)] == ["stopped by operator"]
        assert len(list_events(db)) == 3
        assert all(isinstance(e, EventRow) and e.created_at.tzinfo is UTC for e in list_events(db))


def test_engine_cache_is_per_url_and_reset_in_a_forked_child(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    parent = engine_for(sqlite_url)
    assert engine_for(sqlite_url) is parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            child = engine_for(sqlite_url)
            with child.connect() as connection:
                count = connection.execute(text("SELECT count(*) FROM orders")).scalar_one()
            os.write(write, b"fresh" if child is not parent and count == 0 else b"shared")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read, 16)
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert answer == b"fresh"
    assert engine_for(sqlite_url) is parent


def test_helpers_given_an_engine_run_and_commit_their_own_transaction(engine: Engine) -> None:
    row = new_session(engine, "cl-trend")
    record_event(engine, row.id, "data", "error", "feed silent for 30 s", {"feed": "replay"})
    with pytest.raises(BadInput, match="already exists"):
        new_session(engine, "cl-trend")
    assert [s.name for s in list_session_rows(engine)] == ["cl-trend"]
    found = get_session_row(engine, row.id)
    assert found is not None and found.name == "cl-trend" and found.product == "ES"
    by_name = find_session_row_by_name(engine, "cl-trend")
    assert by_name is not None and by_name.id == row.id
    (event,) = list_events(engine, session_id=row.id, kind="data")
    assert event.details == {"feed": "replay"} and event.created_at.tzinfo is UTC


def test_failed_write_in_engine_mode_leaves_nothing(engine: Engine) -> None:
    with pytest.raises(IntegrityError):
        record_event(engine, "no-such-session", "operator", "info", "orphan event")
    assert list_events(engine) == []


def test_savepoint_absorbs_a_duplicate_and_the_transaction_goes_on(engine: Engine) -> None:
    with Session(engine) as db, db.begin():
        order = new_order(new_session(db).id, "es-sma:1")
        db.add(order)
        db.flush()
        order_id = order.id
        db.add(fill(order_id, "E1", Decimal("1773.25")))
    with Session(engine) as db, db.begin():
        record_event(db, None, "reconciliation", "info", "fills replayed")
        with pytest.raises(IntegrityError), db.begin_nested():
            db.add(fill(order_id, "E1", Decimal("1773.25")))
        db.add(fill(order_id, "E2", Decimal("1773.5")))
    with Session(engine) as db:
        assert db.scalars(select(FillRow.execution_id).order_by(FillRow.id)).all() == ["E1", "E2"]
        assert [e.message for e in list_events(db)] == ["fills replayed"]


def test_sqlite_file_engine_settings(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'a' / 'b' / 'fleet.db'}"
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
        assert (tmp_path / "a" / "b" / "fleet.db").exists()
    finally:
        engine.dispose()


def test_set_session_status(engine: Engine) -> None:
    row = new_session(engine)
    stopped = set_session_status(engine, row.id, "stopped")
    assert stopped.status == "stopped" and stopped.updated_at >= row.updated_at
    loaded = get_session_row(engine, row.id)
    assert loaded is not None and loaded.status == "stopped"
    with pytest.raises(UnknownSession):
        set_session_status(engine, "missing", "active")


def test_a_rounds_order_rows_are_written_together_and_kept_once(engine: Engine) -> None:
    """The tick path writes the orders a round decided in one transaction: rows already there
    (a retried round) are kept as they were, the others written, each client id once."""
    state = initial_state()
    create_session_row(engine, state)
    sid = state.session.id

    def order(n: int, quantity: int = 1) -> OrderToWrite:
        working = WorkingOrder(
            client_order_id=f"{sid[:8]}-{n}",
            contract="ESM5",
            side="buy",
            quantity=quantity,
            order_type="market",
            intent="entry",
            status="new",
            created_at=DECIDED,
        )
        return OrderToWrite(sid, working, DECIDED, "day")

    assert insert_order_if_absent(engine, sid, order(1).order, DECIDED, "day")
    insert_orders_if_absent(engine, [order(1, quantity=9), order(2), order(3, quantity=2)])
    insert_orders_if_absent(engine, [order(2, quantity=7)])
    insert_orders_if_absent(engine, [])
    with Session(engine) as db:
        rows = db.scalars(select(OrderRow).order_by(OrderRow.client_order_id)).all()
    assert [(row.client_order_id, row.quantity) for row in rows] == [
        (f"{sid[:8]}-1", 1),
        (f"{sid[:8]}-2", 1),
        (f"{sid[:8]}-3", 2),
    ]
    assert all(row.status == "new" and row.decided_at == DECIDED for row in rows)


def test_a_steps_events_are_written_once_however_often_the_step_runs(engine: Engine) -> None:
    """A tick step's events are written before its state (``workers.ticks.events``): a re-run
    of the step from the same cursor derives the same keys and writes nothing twice; the same
    message in a later step (another cursor) is an event of its own."""
    state = initial_state()
    create_session_row(engine, state)
    sid = state.session.id
    touched = StepEvent("risk", "info", "protective stop 99 touched at 98", {"closed": 1})
    moved = StepEvent("risk", "info", "stop moved from 99 to 101", {})

    assert record_events_once(engine, step_events(sid, "100-0", [touched, moved])) == 2
    assert record_events_once(engine, step_events(sid, "100-0", [touched, moved])) == 0
    assert record_events_once(engine, step_events(sid, "250-3", [moved])) == 1
    assert record_events_once(engine, step_events(sid, "250-3", [])) == 0
    events = list_events(engine, session_id=sid)
    assert [(e.kind, e.message, e.details) for e in events] == [
        ("risk", touched.message, {"closed": 1}),
        ("risk", moved.message, {}),
        ("risk", moved.message, {}),
    ]
    with Session(engine) as db, pytest.raises(IntegrityError), db.begin():
        again = step_events(sid, "100-0", [touched])
        db.add_all(again)
        db.flush()


def test_a_final_order_is_never_reopened_by_a_late_answer(engine: Engine) -> None:
    """A poll that read ``working`` before a concurrent cancel filled the stop answers late:
    the row stays filled. A final order may still become filled (its fill comes last)."""
    state = initial_state()
    create_session_row(engine, state)
    sid = state.session.id
    for n in (1, 2):
        working = WorkingOrder(
            f"{sid[:8]}-{n}",
            "ESM5",
            "sell",
            1,
            "stop",
            "exit",
            "new",
            DECIDED,
            stop_price=PRICES[0],
        )
        insert_order_if_absent(engine, sid, working, DECIDED, "gtc")
    first, second = f"{sid[:8]}-1", f"{sid[:8]}-2"
    update_order_row(engine, first, "working", "B-1")
    update_order_row(engine, first, "filled")
    update_order_row(engine, first, "working")
    update_order_row(engine, first, "cancelled")
    update_order_row(engine, second, "lost")
    update_order_row(engine, second, "working", "B-2")
    update_order_row(engine, second, "filled", "B-2")
    rows = {r.client_order_id: r for r in (get_order_row(engine, c) for c in (first, second)) if r}
    assert (rows[first].status, rows[first].broker_order_id) == ("filled", "B-1")
    assert (rows[second].status, rows[second].broker_order_id) == ("filled", "B-2")


def test_an_order_filling_in_parts_is_filled_once_its_fills_add_up(engine: Engine) -> None:
    """An order that has filled in part still works at the broker: ``partially_filled``
    (not final) until its fill rows reach its quantity; a final row is never reopened."""
    state = initial_state()
    create_session_row(engine, state)
    sid = state.session.id
    for name in ("p", "c"):
        working = WorkingOrder(
            f"{sid[:8]}-{name}", "ESM5", "buy", 3, "market", "entry", "new", DECIDED
        )
        insert_order_if_absent(engine, sid, working, DECIDED, "day")
    parts, cancelled = f"{sid[:8]}-p", f"{sid[:8]}-c"
    seen = []
    for n, qty in enumerate((1, 2), 1):
        insert_fill_if_absent(engine, f"X{n}", parts, qty, PRICES[0], Decimal(1), DECIDED)
        status = status_after_fills(engine, parts)
        update_order_row(engine, parts, status, "B-1")
        seen.append(status)
    assert seen == ["partially_filled", "filled"]
    insert_fill_if_absent(engine, "X3", cancelled, 1, PRICES[0], Decimal(1), DECIDED)
    update_order_row(engine, cancelled, "cancelled")
    update_order_row(engine, cancelled, status_after_fills(engine, cancelled))
    row = get_order_row(engine, cancelled)
    assert row is not None and row.status == "cancelled"
    assert status_after_fills(engine, "no-such-order") == "filled"
