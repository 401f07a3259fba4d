"""Judging a drill against its reference (pure): every kind of damage is counted, and an
identical run passes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from workers.tools.drill.judge import Injected, judge
from workers.tools.drill.observe import RunOutcome, SessionOutcome, short_coid

T0 = datetime(2013, 10, 7, 14, 1, tzinfo=UTC)
ENTRY = ("1-0", "buy", 1, Decimal("1680.25"), T0)
EXIT = ("2-0", "sell", 1, Decimal("1681"), T0.replace(minute=9))


def session(**changes: object) -> SessionOutcome:
    base = SessionOutcome(
        label="es-sma",
        session_id="sid-1",
        fills=(ENTRY, EXIT),
        position=0,
        broker_position=0,
        order_rows={"abcd-1-0": "filled", "abcd-2-0": "filled"},
        broker_orders=frozenset({"abcd-1-0", "abcd-2-0"}),
        ticks_processed=700,
        rejected={},
        candles_closed=180,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def run(**changes: object) -> RunOutcome:
    return RunOutcome({"es-sma": session(**changes)}, {})


def test_an_identical_run_passes_with_zero_everywhere() -> None:
    figures = judge("partition", run(), run(session_id="sid-2"), faults=1, recovery_s=2.5)
    assert figures.passed
    assert figures.as_json() == {
        "name": "partition",
        "faults": 1,
        "ticks_lost": 0,
        "orders_duplicated": 0,
        "position_mismatches": 0,
        "fills_differing": 0,
        "recovery_s": 2.5,
        "fills": 2,
        "orders_unmatched": 0,
        "candles_differing": 0,
        "rejects_miscounted": 0,
        "violations": 0,
        "settled": True,
        "passed": True,
        "notes": [],
    }


def test_lost_ticks_and_candles_are_counted() -> None:
    figures = judge("x", run(), run(ticks_processed=690, candles_closed=178), 1, 0.0)
    assert (figures.ticks_lost, figures.candles_differing, figures.passed) == (10, 2, False)


def test_an_extra_order_at_the_broker_is_a_duplicate() -> None:
    doubled = run(broker_orders=frozenset({"abcd-1-0", "abcd-2-0", "abcd-3-0"}))
    figures = judge("x", run(), doubled, 1, 0.0)
    assert figures.orders_duplicated == 1
    assert figures.orders_unmatched == 1  # and it has no order row


def test_a_position_unlike_the_brokers_or_the_references_is_a_mismatch() -> None:
    assert judge("x", run(), run(position=1, broker_position=1), 1, 0.0).position_mismatches == 1
    assert judge("x", run(), run(broker_position=-1), 1, 0.0).position_mismatches == 1


def test_fills_are_compared_one_by_one() -> None:
    moved = (ENTRY, (*EXIT[:3], Decimal("1681.25"), EXIT[4]))
    figures = judge("x", run(), run(fills=moved), 1, 0.0)
    assert figures.fills_differing == 2  # the reference's exit missing, another one extra
    assert judge("x", run(), run(fills=(ENTRY, EXIT, EXIT)), 1, 0.0).fills_differing == 1


def test_an_order_row_never_sent_is_unmatched_unless_refused() -> None:
    rows = {"abcd-1-0": "filled", "abcd-2-0": "filled", "abcd-3-0": "new"}
    assert judge("x", run(), run(order_rows=rows), 1, 0.0).orders_unmatched == 1
    refused = {**rows, "abcd-3-0": "rejected"}
    assert judge("x", run(), run(order_rows=refused), 1, 0.0).orders_unmatched == 0


def test_a_session_missing_from_the_run_fails_it() -> None:
    assert not judge("x", run(), RunOutcome({}, {}), 1, 0.0).passed


def test_short_coid_drops_the_sessions_hash() -> None:
    assert short_coid("0123456789abcdef-12-1") == "12-1"
    assert short_coid("0123456789abcdef-stop-12-1") == "stop-12-1"


def test_injected_bad_entries_must_be_counted_exactly() -> None:
    fuzzed = RunOutcome({"es-sma": session(rejected={"bad_price": 3})}, {"bad_price": 3})
    injected = Injected({"es-sma": {"bad_price": 3}}, {"bad_price": 3, "duplicate": 2})
    figures = judge("fuzz", run(), fuzzed, 5, 0.0, injected=injected)
    assert figures.rejects_miscounted == 1  # the publisher's duplicates were not counted
    counted = RunOutcome(fuzzed.sessions, {"bad_price": 3, "duplicate": 2})
    assert judge("fuzz", run(), counted, 5, 0.0, injected=injected).passed
    assert judge("fuzz", run(), counted, 5, 0.0).rejects_miscounted == 2  # none injected


def test_a_run_that_did_not_settle_or_catch_up_fails() -> None:
    unsettled = judge("x", run(), run(), 1, 0.0, unsettled=("es-sma: orders in flight",))
    assert not unsettled.passed
    assert unsettled.notes == ("did not settle: es-sma: orders in flight",)
    stuck = judge("x", run(), run(), 1, None)
    assert (stuck.passed, stuck.recovery_s) == (False, -1.0)


def test_a_violation_the_drill_found_fails_it() -> None:
    twice = ("positions: periods fanned out twice: [7]",)
    figures = judge("two-beats", run(), run(), 3, 0.0, violations=twice)
    assert (figures.passed, figures.violations, figures.notes) == (False, 1, twice)
