"""The tick step's own view of the protective stop (``trading.stops``): which stop
the session expects, a touch taking the position as closed in data time, and an entry with a
stop decided together with its attached stop order."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from models.progress import TickProgress
from models.state import OpenPosition, StrategyRef, WorkingOrder
from tests.workers.ticks.test_tick_step import (
    RISING,
    SID,
    T0,
    Session,
    entries_of,
    initial_state,
    minute_ticks,
)
from trading.intents import client_order_id
from trading.stops import (
    ExpectedStop,
    StopOut,
    after_stop_fill,
    attached_stop_id,
    expected_stop,
    move_stop_id,
    taken_as_closed,
)

LONG = OpenPosition("ESZ13", 1, Decimal("100"), stop_price=Decimal("99"))
FALLING = ["100", "98.5", "98", "97.5", "97"]
"""sma_cross(2, 3) turns short on these; the second minute trades through 99."""


def order(seq: int, side: str, intent: str, minute: int, stop: str | None = None) -> WorkingOrder:
    return WorkingOrder(
        client_order_id(SID, seq, 0),
        "ESZ13",
        side,  # type: ignore[arg-type]
        1,
        "market",
        intent,  # type: ignore[arg-type]
        "new",
        T0 + timedelta(minutes=minute),
        stop_price=None if stop is None else Decimal(stop),
    )


def by_id(*orders: WorkingOrder) -> dict[str, WorkingOrder]:
    return {o.client_order_id: o for o in orders}


def out(direction: int, price: str, quantity: int, minute: int) -> StopOut:
    at = T0 + timedelta(minutes=minute)
    return StopOut(direction, Decimal(price), quantity, int(at.timestamp() * 1000))


def test_the_expected_stop_follows_the_newest_decision() -> None:
    entry = order(1, "buy", "entry", 0, stop="99")
    exit_ = order(2, "sell", "exit", 1)
    assert expected_stop(None, by_id(entry)) == ExpectedStop(1, Decimal("99"))
    assert expected_stop(LONG, by_id(entry, exit_)) is None
    assert expected_stop(LONG, {}) == ExpectedStop(1, Decimal("99"))
    assert expected_stop(LONG, {}, [out(1, "99", -1, 1)]) is None, "its fill is awaited"
    short = order(3, "sell", "entry", 2, stop="103")
    assert expected_stop(None, by_id(short)) == ExpectedStop(-1, Decimal("103"))
    assert expected_stop(None, by_id(short), [out(-1, "103", 1, 3)]) is None
    earlier_touch_of_the_same_price = [out(-1, "103", 1, 1)]
    assert expected_stop(None, by_id(short), earlier_touch_of_the_same_price) == ExpectedStop(
        -1, Decimal("103")
    )
    assert expected_stop(None, by_id(short), [out(1, "99", -1, 1)]) == ExpectedStop(
        -1, Decimal("103")
    ), "another stop's touch does not hide this one"
    assert expected_stop(replace(LONG, stop_price=None), {}) is None


def test_a_stop_fill_settles_the_touch_of_that_stop_only() -> None:
    long_out, short_out = out(1, "99", -1, 1), out(-1, "103", 1, 2)
    both = (long_out, short_out)
    assert taken_as_closed(both) == 0
    assert after_stop_fill(both, -1, Decimal("99")) == (short_out,)
    assert after_stop_fill(both, 1, Decimal("103")) == (long_out,)
    assert after_stop_fill(both, 1, Decimal("99")) == both, "a buy fill settles no sell stop"
    assert after_stop_fill(both, -1, None) == both


@given(st.lists(st.tuples(st.sampled_from([1, -1]), st.integers(1, 3)), max_size=6))
def test_touches_round_trip_through_the_progress_json(touches: list[tuple[int, int]]) -> None:
    stops_out = tuple(out(d, "100.25", -d * q, m) for m, (d, q) in enumerate(touches))
    progress = TickProgress(last_ms=1, stops_out=stops_out)
    again = TickProgress.from_json(progress.to_json())
    assert again == progress
    assert again.stop_out == -sum(d * q for d, q in touches)


@given(
    st.one_of(st.none(), st.integers(0, 2**53)),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(0, 10**12),
)
def test_progress_json_without_rejects_or_stops_is_the_sorted_json(
    last_ms: int | None, seq: int, closed: int, ticks: int
) -> None:
    """The common counters are written directly (every tick step): the same text as
    ``json.dumps(..., sort_keys=True)`` and read back equal."""
    progress = TickProgress(last_ms, seq, closed, ticks)
    generic = {
        "last_ms": last_ms,
        "signal_seq": seq,
        "candles_closed": closed,
        "ticks_processed": ticks,
        "rejected": {},
    }
    assert progress.to_json() == json.dumps(generic, separators=(",", ":"), sort_keys=True)
    assert TickProgress.from_json(progress.to_json()) == progress
    assert progress.advanced(7, 3, {}) == TickProgress(7, seq, closed, ticks + 3)


def test_a_touched_stop_takes_the_position_as_closed_before_the_strategy_runs() -> None:
    held = initial_state(open_position=LONG)
    watched = Session.of(held, protective_stops=True).step(entries_of(minute_ticks(FALLING)))
    unwatched = Session.of(held).step(entries_of(minute_ticks(FALLING)))

    assert watched.progress.stop_out == -1
    (touch,) = watched.progress.stops_out
    assert (touch.direction, touch.price, touch.quantity) == (1, Decimal("99"), -1)
    assert [e.message.split(":")[0] for e in watched.events] == [
        "protective stop 99 touched at 98.00"
    ]
    assert [(o.order.side, o.order.intent) for o in watched.orders] == [("sell", "entry")]
    assert [(o.order.side, o.order.intent) for o in unwatched.orders] == [
        ("sell", "exit"),
        ("sell", "entry"),
    ]


def test_a_session_without_a_stop_is_not_watched() -> None:
    flat = initial_state()
    session = Session.of(flat, protective_stops=True).step(entries_of(minute_ticks(FALLING)))
    assert session.progress.stop_out == 0
    assert session.events == []


def test_an_entry_with_a_stop_is_decided_with_its_attached_stop() -> None:
    breakout = StrategyRef("breakout", {"lookback": 2, "atr_period": 2}, {"stop": None})
    state = initial_state(strategy=breakout, warmup_periods=3)
    closes = [*RISING, "110"]
    session = Session.of(state, protective_stops=True).step(entries_of(minute_ticks(closes)))
    entry = next(o.order for o in session.orders if o.order.intent == "entry")
    stops = [o for o in session.orders if o.order.order_type == "stop"]

    assert entry.stop_price is not None and entry.side == "buy"
    assert [(s.order.client_order_id, s.order.side, s.order.quantity) for s in stops] == [
        (attached_stop_id(entry.client_order_id), "sell", entry.quantity)
    ]
    assert stops[0].order.stop_price == entry.stop_price
    assert stops[0].decided_at == entry.created_at and stops[0].time_in_force == "gtc"
    assert stops[0].order.client_order_id not in session.value("orders")


TRAILING = StrategyRef(
    "breakout",
    {"lookback": 2, "atr_period": 2, "atr_mult": "2", "quantity": 1, "trail": "1"},
    {"stop": "99", "stop_side": 1},
)
"""Holds a long with its stop at 99; on RISING (true range 1 a minute) the stop trails one
ATR under each close."""


def test_a_trailed_stop_moves_the_position_stop_and_decides_a_move_order() -> None:
    state = initial_state(strategy=TRAILING, warmup_periods=3, open_position=LONG)
    session = Session.of(state, protective_stops=True).step(entries_of(minute_ticks(RISING)))

    moves = [(o.order.client_order_id, o.order.side, o.order.stop_price) for o in session.orders]
    assert moves == [
        (move_stop_id(SID, 1), "sell", Decimal("101.00")),
        (move_stop_id(SID, 2), "sell", Decimal("102.00")),
        (move_stop_id(SID, 3), "sell", Decimal("103.00")),
    ]
    for new in session.orders:
        assert (new.order.order_type, new.order.intent, new.order.quantity) == ("stop", "exit", 1)
        assert new.decided_at == new.order.created_at and new.time_in_force == "gtc"
        assert new.order.client_order_id not in session.value("orders")
    assert session.value("open_position").stop_price == Decimal("103.00")
    assert session.progress.signal_seq == 3 and session.progress.stop_out == 0
    assert [e.message for e in session.events] == [
        "stop moved from 99 to 101.00",
        "stop moved from 101.00 to 102.00",
        "stop moved from 102.00 to 103.00",
    ]
    assert [o.decided_at for o in session.orders] == [
        T0 + m * timedelta(minutes=1) for m in (3, 4, 5)
    ]


def test_a_moved_stop_is_watched_from_its_move_on() -> None:
    state = initial_state(strategy=TRAILING, warmup_periods=3, open_position=LONG)
    closes = [*RISING, "102.5"]
    session = Session.of(state, protective_stops=True).step(entries_of(minute_ticks(closes)))

    (touch,) = session.progress.stops_out
    assert (touch.direction, touch.price, touch.quantity) == (1, Decimal("103.00"), -1)


def test_without_broker_stops_a_move_changes_the_position_stop_only() -> None:
    state = initial_state(strategy=TRAILING, warmup_periods=3, open_position=LONG)
    session = Session.of(state).step(entries_of(minute_ticks(RISING)))
    assert session.orders == []
    assert session.value("open_position").stop_price == Decimal("103.00")
    assert session.progress.signal_seq == 3, "a move is a decision either way: the same ids"


def test_a_move_before_the_entry_fill_is_applied_moves_the_entry_stop() -> None:
    """The same decision whether the entry's fill was applied yet: the pending entry's stop
    moves (the position takes it on the fill), and the move order is the same."""
    pending = order(7, "buy", "entry", -1, stop="99")
    waiting = initial_state(
        strategy=TRAILING,
        warmup_periods=3,
        orders=by_id(pending),
        open_position=OpenPosition("ESZ13"),
    )
    moved = Session.of(waiting, protective_stops=True).step(entries_of(minute_ticks(RISING[:3])))
    applied = Session.of(
        initial_state(strategy=TRAILING, warmup_periods=3, open_position=LONG),
        protective_stops=True,
    ).step(entries_of(minute_ticks(RISING[:3])))

    assert moved.value("orders")[pending.client_order_id].stop_price == Decimal("101.00")
    assert moved.value("open_position").stop_price is None
    assert [
        (o.order.side, o.order.quantity, o.order.stop_price, o.decided_at) for o in moved.orders
    ] == [
        (o.order.side, o.order.quantity, o.order.stop_price, o.decided_at) for o in applied.orders
    ]
    assert len(moved.orders) == 1
