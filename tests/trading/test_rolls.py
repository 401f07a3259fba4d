"""trading.rolls: the decision table from broker answers, back-adjustment, ids, clocks."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.calendar import FixedHolidays
from trading.exceptions import BadInput
from trading.market import Candle
from trading.rolls import (
    DECISIONS,
    STEPS,
    Action,
    OrderFact,
    Phase,
    RollPlan,
    adjust_price,
    assess,
    back_adjust,
    close_order_id,
    decide,
    decision_time,
    next_step,
    open_order_id,
    roll_spread,
    roll_target,
    session_clock,
    should_roll,
    steps_from,
)

OLD, NEW = "ESZ13", "ESH14"
P1, P2 = Decimal("1790.25"), Decimal("1783.50")
NO_HOLIDAYS = FixedHolidays(frozenset({"CME"}), frozenset())


def plan(quantity: int) -> RollPlan:
    return RollPlan(7, "s-1", OLD, NEW, quantity)


def working(quantity: int) -> OrderFact:
    return OrderFact("working", abs(quantity), 0, None)


def filled(quantity: int, price: Decimal) -> OrderFact:
    return OrderFact("filled", abs(quantity), abs(quantity), price)


# ---------------------------------------------------------------- ids, steps, targets


def test_order_ids_are_deterministic_and_distinct() -> None:
    assert close_order_id(12) == "roll-12-close" == RollPlan(12, "s", OLD, NEW, 1).close_id
    assert open_order_id(12) == "roll-12-open"
    with pytest.raises(BadInput):
        close_order_id(0)


def test_steps_run_in_order_and_resume_from_any_step() -> None:
    assert STEPS == ("begin", "close", "await_close", "open", "await_open", "switch", "end")
    assert next_step("end") == "done"
    assert next_step("close") == "await_close"
    assert steps_from("await_close") == ("await_close", "open", "await_open", "switch", "end")
    assert steps_from("done") == ()
    with pytest.raises(BadInput):
        steps_from("nope")


def test_roll_target_defaults_to_the_next_contract_and_refuses_others() -> None:
    assert roll_target(OLD) == NEW
    assert roll_target("GCZ13") == "GCG14"
    assert roll_target(OLD, "esm14") == "ESM14"
    with pytest.raises(BadInput, match="another product"):
        roll_target(OLD, "NQH14")
    with pytest.raises(BadInput, match="itself"):
        roll_target(OLD, OLD)


def test_the_session_clock_is_the_data_time_and_decisions_come_just_after_it() -> None:
    wall = datetime(2030, 1, 1, tzinfo=UTC)
    ms = 1_386_115_200_000
    assert session_clock(ms, wall) == datetime(2013, 12, 4, tzinfo=UTC)
    assert decision_time(ms, wall) == datetime(2013, 12, 4, tzinfo=UTC) + timedelta(milliseconds=1)
    assert session_clock(None, wall) == wall == decision_time(None, wall)


def test_should_roll_inside_the_window_on_the_sessions_day() -> None:
    roll_day = datetime(2013, 12, 12, 15, tzinfo=UTC)
    assert should_roll(OLD, roll_day, NO_HOLIDAYS, 3)
    assert not should_roll(OLD, roll_day - timedelta(days=1), NO_HOLIDAYS, 3)
    assert not should_roll(OLD, roll_day + timedelta(days=3), NO_HOLIDAYS, 3)
    assert date(2013, 12, 14) == (roll_day + timedelta(days=2)).date()
    assert should_roll(OLD, roll_day + timedelta(days=2), NO_HOLIDAYS, 3)


# ---------------------------------------------------------------- assess: the happy path


@pytest.mark.parametrize("q", [2, -3])
def test_assess_walks_through_every_phase_of_a_roll(q: int) -> None:
    p = plan(q)
    assert assess(p, None, None, {OLD: q}).phase is Phase.NEED_CLOSE
    assert assess(p, working(q), None, {OLD: q}).phase is Phase.CLOSE_WORKING
    after_close = assess(p, filled(q, P1), None, {})
    assert after_close.phase is Phase.NEED_OPEN and after_close.close_price == P1
    assert assess(p, filled(q, P1), working(q), {}).phase is Phase.OPEN_WORKING
    done = assess(p, filled(q, P1), filled(q, P2), {NEW: q})
    assert (done.phase, done.close_price, done.open_price) == (Phase.OPENED, P1, P2)


def test_a_flat_roll_needs_flat_broker_positions() -> None:
    assert assess(plan(0), None, None, {}).phase is Phase.FLAT
    assert assess(plan(0), None, None, {OLD: 1}).phase is Phase.AMBIGUOUS
    assert assess(plan(0), working(1), None, {}).phase is Phase.AMBIGUOUS


# ---------------------------------------------------------------- assess: ambiguity


@pytest.mark.parametrize(
    ("close", "open_", "positions", "why"),
    [
        (None, None, {OLD: 1}, "expects 2 and 0"),
        (None, None, {OLD: 2, NEW: 2}, "expects 2 and 0"),
        (None, working(2), {OLD: 2}, "close is not filled"),
        (OrderFact("cancelled", 2, 0, None), None, {OLD: 2}, "cancelled"),
        (filled(2, P1), OrderFact("rejected", 2, 0, None), {}, "rejected"),
        (OrderFact("working", 3, 0, None), None, {OLD: 2}, "for 3"),
        (filled(2, P1), None, {OLD: 2}, "expects 0 and 0"),
        (filled(2, P1), filled(2, P2), {NEW: 2, OLD: -2}, "expects 0 and 2"),
        (OrderFact("filled", 2, 2, None), None, {}, "without a fill price"),
    ],
)
def test_answers_that_match_no_point_of_the_plan_are_ambiguous(
    close: OrderFact | None, open_: OrderFact | None, positions: dict[str, int], why: str
) -> None:
    found = assess(plan(2), close, open_, positions)
    assert found.phase is Phase.AMBIGUOUS
    assert why in found.reason
    for step in STEPS:
        assert decide(step, found).action is Action.STOP


def test_an_order_the_broker_calls_unknown_counts_as_absent() -> None:
    unknown = OrderFact("unknown", 2, 0, None)
    assert assess(plan(2), unknown, None, {OLD: 2}).phase is Phase.NEED_CLOSE


# ---------------------------------------------------------------- the decision table


def test_each_order_is_sent_by_exactly_one_step_and_only_in_its_phase() -> None:
    sends = {pair for pair, action in DECISIONS.items() if action is Action.SEND}
    assert sends == {("close", Phase.NEED_CLOSE), ("open", Phase.NEED_OPEN)}


def test_steps_after_their_work_move_on_and_steps_ahead_of_the_broker_stop() -> None:
    assert decide("close", assess(plan(1), working(1), None, {OLD: 1})).action is Action.DONE
    assert decide("await_close", assess(plan(1), working(1), None, {OLD: 1})).action is (
        Action.WAIT
    )
    missing_close = decide("await_close", assess(plan(1), None, None, {OLD: 1}))
    assert missing_close.action is Action.STOP and "need_close" in missing_close.reason
    assert decide("open", assess(plan(1), working(1), None, {OLD: 1})).action is Action.STOP
    assert decide("begin", assess(plan(1), working(1), None, {OLD: 1})).action is Action.STOP
    assert decide("begin", assess(plan(0), None, None, {})).action is Action.DONE


FACT = st.one_of(
    st.none(),
    st.builds(
        OrderFact,
        status=st.sampled_from(["working", "filled", "cancelled", "rejected", "unknown"]),
        quantity=st.integers(1, 3),
        filled_quantity=st.integers(0, 3),
        average_fill_price=st.one_of(st.none(), st.just(P1)),
    ),
)
POSITIONS = st.dictionaries(st.sampled_from([OLD, NEW, "ESM14"]), st.integers(-3, 3), max_size=3)


@given(
    q=st.integers(-3, 3),
    close=FACT,
    open_=FACT,
    positions=POSITIONS,
    step=st.sampled_from(STEPS),
)
def test_no_answer_ever_sends_an_order_the_broker_already_has(
    q: int, close: OrderFact | None, open_: OrderFact | None, positions: dict[str, int], step: str
) -> None:
    """Whatever the broker answers, an order is sent only if the broker has no order with its
    id, the positions are exactly the plan's starting point for that order, and (for the open)
    the close has filled. A flat plan never sends anything."""
    p = plan(q)
    decision = decide(step, assess(p, close, open_, positions))
    if decision.action is not Action.SEND:
        return
    assert q != 0
    live_close = close is not None and close.status != "unknown"
    live_open = open_ is not None and open_.status != "unknown"
    if step == "close":
        assert not live_close and not live_open
        assert positions.get(OLD, 0) == q and positions.get(NEW, 0) == 0
    else:
        assert step == "open" and not live_open
        assert close is not None and close.status == "filled"
        assert positions.get(OLD, 0) == 0 and positions.get(NEW, 0) == 0


# ---------------------------------------------------------------- back-adjustment

PRICE = st.decimals(min_value=Decimal("100"), max_value=Decimal("5000"), places=2)


@st.composite
def candles(draw: st.DrawFn) -> list[Candle]:
    start = datetime(2013, 12, 3, tzinfo=UTC)
    out = []
    for index in range(draw(st.integers(0, 30))):
        a, b = draw(PRICE), draw(PRICE)
        low, high = min(a, b), max(a, b)
        open_ = draw(st.decimals(min_value=low, max_value=high, places=2))
        close = draw(st.decimals(min_value=low, max_value=high, places=2))
        out.append(
            Candle(start + timedelta(minutes=index), open_, high, low, close, draw(st.integers(0)))
        )
    return out


SPREAD = st.decimals(min_value=Decimal("-50"), max_value=Decimal("50"), places=2)


@given(history=candles(), spread=SPREAD)
def test_back_adjustment_shifts_every_price_and_keeps_every_difference(
    history: list[Candle], spread: Decimal
) -> None:
    adjusted = back_adjust(history, spread)
    assert len(adjusted) == len(history)
    for old, new in zip(history, adjusted, strict=True):
        assert (new.start, new.volume) == (old.start, old.volume)
        assert new.open - old.open == new.high - old.high == spread
        assert new.low - old.low == new.close - old.close == spread
        assert new.low <= min(new.open, new.close) <= max(new.open, new.close) <= new.high
    closes = [c.close for c in history]
    moved = [c.close for c in adjusted]
    assert [b - a for a, b in itertools.pairwise(closes)] == [
        b - a for a, b in itertools.pairwise(moved)
    ]
    assert back_adjust(adjusted, -spread) == tuple(history)


@given(history=candles(), spread=SPREAD)
def test_a_moving_average_continues_shifted_by_the_spread(
    history: list[Candle], spread: Decimal
) -> None:
    if not history:
        return
    adjusted = back_adjust(history, spread)
    n = len(history)
    before = sum(c.close for c in history)
    after = sum(c.close for c in adjusted)
    assert after - before == spread * n


def test_the_spread_is_new_minus_old_and_moves_price_levels() -> None:
    assert roll_spread(P1, P2) == Decimal("-6.75")
    assert adjust_price(Decimal("1780.00"), Decimal("-6.75")) == Decimal("1773.25")
    assert adjust_price(None, Decimal("1")) is None
