"""Protective stops (on by default) on the real replay through a real worker: the breakout
sessions' entries carry attached stops, a trailing breakout moves its stop (each move replaces
the resting stop as of its decision), every touch the tick step saw is one stop fill at the
broker, at the stop or worse, and the run ends consistent. Three workers give this one-worker
result: ``tests/workers/ticks/test_tick_path.py`` (the same reference)."""

from __future__ import annotations

import pytest

from tests.kit.redis import RedisServer
from tests.kit.runs import reference_run
from tests.kit.snapshots import (
    RunResult,
    SessionSnapshot,
    assert_consistent,
    is_stop_key,
    needed_stop,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def reference(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return reference_run(redis_server, tmp_path_factory.mktemp("reference"))


def check_stop_fills(snap: SessionSnapshot) -> None:
    """Every touch the step saw is one stop fill, after the stop's decision, at it or worse."""
    stops = [o for o in snap.orders if is_stop_key(o.key)]
    touched = [e for e in snap.events if e[2].startswith("protective stop")]
    filled = [f for f in snap.fills if is_stop_key(f.key)]
    assert len(touched) == len(filled) > 0, snap.name
    for fill in filled:
        stop = next(o for o in stops if o.key == fill.key)
        assert stop.stop_price is not None and stop.decided_at is not None
        assert fill.filled_at > stop.decided_at
        worse = (
            fill.price >= stop.stop_price if stop.side == "buy" else fill.price <= stop.stop_price
        )
        assert worse, (fill, stop)


def test_the_breakout_session_trades_with_stops_that_fill_in_data_time(
    reference: RunResult,
) -> None:
    assert_consistent(reference)
    snap = reference.sessions["breakout"]
    entries = [o for o in snap.orders if o.intent == "entry"]
    stops = [o for o in snap.orders if is_stop_key(o.key)]
    assert entries and len(stops) >= len(entries)
    assert {o.status for o in stops} >= {"filled", "cancelled"}
    check_stop_fills(snap)
    assert not [o for o in reference.sessions["sma-fast"].orders if is_stop_key(o.key)]


def test_a_trailing_stop_moves_at_the_broker_and_each_move_replaces_the_last(
    reference: RunResult,
) -> None:
    snap = reference.sessions["trailing"]
    moves = [o for o in snap.orders if o.key.startswith("move-")]
    assert len(moves) >= 3, f"the trailing session should move its stop on this day: {moves}"
    moved = [e for e in snap.events if e[2].startswith("stop moved from")]
    assert len(moved) == len(moves), "each move decided with its event, one order each"
    for move in moves:
        assert (move.order_type, move.intent, move.quantity) == ("stop", "exit", 1), move
        assert move.stop_price is not None and move.decided_at is not None
    statuses = [move.status for move in moves]
    assert set(statuses) <= {"filled", "cancelled", "working"}
    assert "cancelled" in statuses, "a later move replaces an earlier one"
    at_broker = set(map(snap.reduce, snap.broker_orders))
    assert {m.key for m in moves if m.status != "cancelled"} <= at_broker
    check_stop_fills(snap)
    working = [o for o in snap.orders if is_stop_key(o.key) and o.status == "working"]
    held = snap.state.open_position
    assert [(o.side, o.quantity, o.stop_price) for o in working] == needed_stop(held)
