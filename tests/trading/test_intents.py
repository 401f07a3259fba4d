from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.intents import OrderIntent, classify_fill, client_order_id, intents_for

positions = st.integers(min_value=-50, max_value=50)
stops = st.one_of(st.none(), st.decimals(min_value=1, max_value=10_000, places=2))


@given(current=positions, target=positions, stop=stops)
def test_intents_move_current_to_target(current: int, target: int, stop: Decimal | None) -> None:
    intents = intents_for(current, target, stop, "why")
    assert current + sum(i.signed_quantity for i in intents) == target
    assert (intents == []) == (current == target)
    kinds = [i.intent for i in intents]
    assert kinds.count("exit") <= 1
    assert kinds.count("entry") <= 1
    assert kinds in ([], ["exit"], ["entry"], ["exit", "entry"])
    assert [i.leg for i in intents] == list(range(len(intents)))
    assert all(i.quantity > 0 and i.reason == "why" for i in intents)

    position = current
    for intent in intents:
        after = position + intent.signed_quantity
        if intent.intent == "exit":
            assert abs(after) < abs(position)
            assert after == 0 or (after > 0) == (position > 0)
            assert intent.stop_price is None
        else:
            assert target != 0
            assert abs(after) > abs(position)
            assert (intent.side == "buy") == (target > 0)
            assert intent.stop_price == stop
        position = after


def test_reversal_is_exit_then_entry() -> None:
    intents = intents_for(3, -2, Decimal("101.25"), "flip")
    assert intents == [
        OrderIntent("sell", 3, "exit", None, "flip", leg=0),
        OrderIntent("sell", 2, "entry", Decimal("101.25"), "flip", leg=1),
    ]


def test_single_leg_cases() -> None:
    assert intents_for(0, 2, None, "r") == [OrderIntent("buy", 2, "entry", None, "r", 0)]
    assert intents_for(-3, -1, None, "r") == [OrderIntent("buy", 2, "exit", None, "r", 0)]
    assert intents_for(-1, -4, None, "r") == [OrderIntent("sell", 3, "entry", None, "r", 0)]
    assert intents_for(2, 0, Decimal(1), "r") == [OrderIntent("sell", 2, "exit", None, "r", 0)]
    assert intents_for(5, 5, None, "r") == []


def test_order_intent_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="quantity"):
        OrderIntent("buy", 0, "entry", None, "", 0)
    with pytest.raises(ValueError, match="side"):
        OrderIntent("hold", 1, "entry", None, "", 0)  # type: ignore[arg-type]


session_ids = st.text(min_size=1, max_size=40)
seqs = st.integers(min_value=0, max_value=10**9)
legs = st.integers(min_value=0, max_value=3)


@given(session=session_ids, seq=seqs, leg=legs)
def test_client_order_id_is_deterministic_and_safe(session: str, seq: int, leg: int) -> None:
    first = client_order_id(session, seq, leg)
    assert first == client_order_id(session, seq, leg)
    assert re.fullmatch(r"[A-Za-z0-9-]+", first)
    assert len(first) <= 40


@given(a=st.tuples(session_ids, seqs, legs), b=st.tuples(session_ids, seqs, legs))
def test_client_order_ids_distinct_for_distinct_inputs(
    a: tuple[str, int, int], b: tuple[str, int, int]
) -> None:
    assert (client_order_id(*a) == client_order_id(*b)) == (a == b)


def test_client_order_id_distinguishes_shared_prefixes() -> None:
    base = "0b7e3f2a-1111-4c5d-9e8f-"
    ids = {client_order_id(base + f"{n:012d}", 7, 0) for n in range(1000)}
    assert len(ids) == 1000


def test_client_order_id_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        client_order_id("", 1, 0)
    with pytest.raises(ValueError):
        client_order_id("s", -1, 0)


@pytest.mark.parametrize(
    ("before", "fill", "kind"),
    [
        (0, 2, "entry"),
        (0, -1, "entry"),
        (2, 1, "entry"),
        (-2, -3, "entry"),
        (2, -1, "exit"),
        (2, -2, "exit"),
        (-3, 3, "exit"),
        (2, -5, "reversal"),
        (-1, 4, "reversal"),
    ],
)
def test_classify_fill(before: int, fill: int, kind: str) -> None:
    assert classify_fill(before, fill) == kind


@given(current=positions, target=positions)
def test_classify_fill_agrees_with_intents(current: int, target: int) -> None:
    position = current
    for intent in intents_for(current, target, None, ""):
        assert classify_fill(position, intent.signed_quantity) == intent.intent
        position += intent.signed_quantity
