"""Reconciliation decisions (pure): the broker wins, but only when nothing is in flight; a
failing broker is never read as flat; several sessions on one account and contract are
compared by their sum and never guessed apart; the order cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading.reconcile import (
    AdoptOrder,
    Ambiguous,
    ApplyFills,
    BrokerOrderState,
    BrokerPosition,
    CloseOrder,
    CorrectTo,
    FlagOrder,
    InSync,
    LocalOrder,
    LocalPosition,
    MarkLost,
    OrderInSync,
    QueryBroker,
    RecheckLater,
    ReconcileMeta,
    WaitOrder,
    after_answer,
    after_failure,
    after_query,
    corrected_average,
    decide_position,
    entries_blocked,
    plan_orders,
    remember_flagged,
)

NOW = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
GRACE = timedelta(seconds=5)
S1, S2 = "s-1", "s-2"


def mine(quantity: int, **kw: object) -> LocalPosition:
    return LocalPosition(S1, quantity, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- positions


def test_equal_positions_are_in_sync_even_with_orders_in_flight() -> None:
    decision = decide_position(S1, [mine(2, open_orders=1)], BrokerPosition(2), NOW, GRACE)
    assert decision == InSync(2)


def test_a_settled_difference_is_corrected_to_the_broker() -> None:
    decision = decide_position(S1, [mine(0)], BrokerPosition(3, Decimal("1700.5")), NOW, GRACE)
    assert isinstance(decision, CorrectTo)
    assert (decision.local, decision.broker, decision.average_price) == (0, 3, Decimal("1700.5"))
    assert "broker holds 3" in decision.reason


@pytest.mark.parametrize(
    ("local", "broker", "why"),
    [
        (mine(0, open_orders=1), BrokerPosition(1), "in flight"),
        (mine(0, last_fill_at=NOW - timedelta(seconds=4)), BrokerPosition(1), "grace"),
        (mine(0, rolling=True), BrokerPosition(1), "rolling"),
        (mine(0), BrokerPosition(1, fills_pending=1), "not delivered"),
    ],
)
def test_anything_in_flight_means_check_again_not_correct(
    local: LocalPosition, broker: BrokerPosition, why: str
) -> None:
    decision = decide_position(S1, [local], broker, NOW, GRACE)
    assert isinstance(decision, RecheckLater)
    assert why in decision.reason


def test_a_fill_older_than_the_grace_period_does_not_hold_a_correction() -> None:
    local = mine(0, last_fill_at=NOW - timedelta(seconds=6))
    assert isinstance(decide_position(S1, [local], BrokerPosition(1), NOW, GRACE), CorrectTo)


def test_sessions_sharing_account_and_contract_compare_their_sum() -> None:
    group = [mine(1), LocalPosition(S2, -1)]
    assert decide_position(S1, group, BrokerPosition(0), NOW, GRACE) == InSync(1)
    decision = decide_position(S1, group, BrokerPosition(2), NOW, GRACE)
    assert isinstance(decision, Ambiguous)
    assert (decision.local_total, decision.broker, decision.sessions) == (0, 2, (S1, S2))


def test_a_busy_neighbour_defers_the_verdict() -> None:
    group = [mine(1), LocalPosition(S2, 0, open_orders=2)]
    decision = decide_position(S1, group, BrokerPosition(2), NOW, GRACE)
    assert isinstance(decision, RecheckLater)
    assert S2 in decision.reason


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="once"):
        decide_position(S1, [LocalPosition(S2, 0)], BrokerPosition(0), NOW, GRACE)
    with pytest.raises(ValueError, match="aware"):
        decide_position(S1, [mine(0)], BrokerPosition(0), NOW.replace(tzinfo=None), GRACE)


def test_corrected_average_prefers_the_broker_then_the_same_side_then_the_mark() -> None:
    mark = Decimal("1701")
    assert corrected_average(1, Decimal("1690"), 2, Decimal("1695"), mark) == Decimal("1695")
    assert corrected_average(1, Decimal("1690"), 2, None, mark) == Decimal("1690")
    assert corrected_average(-1, Decimal("1690"), 2, None, mark) == mark
    assert corrected_average(0, None, 2, None, None) is None
    assert corrected_average(2, Decimal("1690"), 0, Decimal("1"), mark) is None


# ----------------------------------------------------------------------------- failures


def test_failures_never_touch_the_position_and_block_entries_at_the_limit() -> None:
    meta = ReconcileMeta()
    first = after_failure(meta, "ServiceUnavailable: down", max_failures=3)
    assert (first.first, first.blocked_now, first.meta.stale, first.meta.failures) == (
        True,
        False,
        True,
        1,
    )
    second = after_failure(first.meta, "down", 3)
    third = after_failure(second.meta, "down", 3)
    fourth = after_failure(third.meta, "down", 3)
    assert (second.first, second.blocked_now) == (False, False)
    assert third.blocked_now and third.meta.entries_blocked
    assert not fourth.blocked_now and fourth.meta.entries_blocked
    assert entries_blocked(fourth.meta.to_json())
    answered = after_answer(fourth.meta, NOW)
    assert answered.recovered and answered.unblocked
    assert answered.meta.failures == 0 and not answered.meta.entries_blocked
    assert answered.meta.last_ok == NOW
    assert answered.meta.checks == 5
    with pytest.raises(ValueError):
        after_failure(meta, "x", 0)


def test_meta_round_trips_and_absent_means_initial() -> None:
    meta = ReconcileMeta(
        failures=2,
        stale=True,
        last_ok=NOW,
        last_error="e",
        entries_blocked=True,
        ambiguous=True,
        checks=7,
        absorbed_cursor="17-0",
        flagged_orders=("a", "b"),
    )
    assert ReconcileMeta.from_json(meta.to_json()) == meta
    assert ReconcileMeta.from_json(None) == ReconcileMeta()
    assert not entries_blocked(None) and not entries_blocked("")
    with pytest.raises(ValueError):
        ReconcileMeta.from_json('{"last_ok": "2024-03-01T14:30:00"}')
    with pytest.raises(ValueError):
        ReconcileMeta.from_json("[1]")
    kept = remember_flagged(ReconcileMeta(flagged_orders=("a",)), ["a", "b"])
    assert kept.flagged_orders == ("a", "b")


# ----------------------------------------------------------------------------- orders

OLD = NOW - timedelta(minutes=1)


def local(coid: str, created: datetime = OLD) -> LocalOrder:
    return LocalOrder(coid, "working", created)


def theirs(coid: str, status: str = "working", session: str = S1, contract: str = "ESZ13"):
    return BrokerOrderState(coid, status, session, contract)  # type: ignore[arg-type]


def plan(local_orders, broker_open, *, adopt=True, sole=True, flagged=()):
    return plan_orders(
        S1,
        "ESZ13",
        local_orders,
        broker_open,
        now=NOW,
        grace=GRACE,
        adopt=adopt,
        sole_owner=sole,
        flagged=flagged,
    )


def test_the_order_cases() -> None:
    actions = plan(
        [local("both"), local("gone"), local("young", NOW - timedelta(seconds=1))],
        [theirs("both"), theirs("extern"), theirs("other", session=S2)],
    )
    assert actions == [
        OrderInSync("both"),
        QueryBroker("gone"),
        WaitOrder("young"),
        AdoptOrder("extern"),
    ]
    order = local("gone")
    assert after_query(order, None) == MarkLost("gone")
    assert after_query(order, theirs("gone", "unknown")) == MarkLost("gone")
    assert after_query(order, theirs("gone", "filled")) == ApplyFills("gone")
    assert after_query(order, theirs("gone", "cancelled")) == CloseOrder("gone", "cancelled")
    assert after_query(order, theirs("gone", "rejected")) == CloseOrder("gone", "rejected")
    assert after_query(order, theirs("gone", "working")) == OrderInSync("gone")


def test_an_order_whose_send_the_broker_never_answered_is_never_marked_lost() -> None:
    unsent = LocalOrder("queued", "new", NOW - timedelta(minutes=5))
    assert after_query(unsent, None) == WaitOrder("queued")
    assert after_query(unsent, theirs("queued", "unknown")) == WaitOrder("queued")
    assert after_query(unsent, theirs("queued", "filled")) == ApplyFills("queued")


def test_external_orders_are_flagged_once_when_not_adopted_or_owner_is_ambiguous() -> None:
    anonymous = theirs("anon", session="")
    other_contract = theirs("gc", session="", contract="GCZ13")
    assert plan([], [anonymous, other_contract]) == [AdoptOrder("anon")]
    (flag,) = plan([], [anonymous], sole=False)
    assert isinstance(flag, FlagOrder) and "several sessions" in flag.reason
    (flag,) = plan([], [theirs("mine")], adopt=False)
    assert isinstance(flag, FlagOrder) and "switched off" in flag.reason
    assert plan([], [theirs("mine")], adopt=False, flagged={"mine"}) == []
