"""Recovery's plan (``trading.recovery``) on plain values: no Redis, no SQL, no broker.

The position a lost session holds again, with the stop price it keeps, and the signal
sequence it continues from (the re-warming and history window are pinned in
``tests/workers/test_recovery_unit.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from trading.intents import client_order_id
from trading.recovery import (
    OpenStop,
    Position,
    decided_after,
    rebuilt_position,
    signal_seq_after,
)
from trading.stops import attached_stop_id, move_stop_id

SID = "9e8d7c6b-0000-4000-8000-00000000e001"
T0 = datetime(2013, 10, 7, 13, 30, tzinfo=UTC)
LAST = Decimal("1681.25")
SELL_STOP = OpenStop("s-1", "ESZ13", "sell", Decimal("1670.00"))


def test_a_sole_session_takes_the_broker_position_and_its_average() -> None:
    position = rebuilt_position(
        "ESZ13", (2, Decimal("1680.00")), (1, Decimal("1675.00")), True, T0, LAST, []
    )
    assert position == Position(2, Decimal("1680.00"), T0, None)


def test_a_shared_account_takes_the_session_s_own_fills() -> None:
    position = rebuilt_position(
        "ESZ13", (5, Decimal("1680.00")), (-1, Decimal("1690.00")), False, T0, LAST, []
    )
    assert position == Position(-1, Decimal("1690.00"), T0, None)


def test_without_an_average_the_fills_or_else_the_last_price_value_it() -> None:
    from_fills = rebuilt_position("ESZ13", (1, None), (1, Decimal("1677.50")), True, T0, LAST, [])
    assert from_fills.average_price == Decimal("1677.50")
    from_price = rebuilt_position("ESZ13", (2, None), (1, Decimal("1677.50")), True, T0, LAST, [])
    assert from_price.average_price == LAST
    unknown = rebuilt_position("ESZ13", (2, None), (1, None), True, T0, None, [])
    assert unknown.average_price is None


def test_a_flat_session_has_no_opening_time_and_no_stop() -> None:
    position = rebuilt_position("ESZ13", (0, None), (0, None), True, T0, LAST, [SELL_STOP])
    assert position == Position(0, None, None, None)


def test_the_position_keeps_the_price_of_its_newest_open_stop_on_the_closing_side() -> None:
    older = OpenStop("s-0", "ESZ13", "sell", Decimal("1660.00"))
    long = rebuilt_position(
        "ESZ13", (1, Decimal("1680")), (1, None), True, T0, LAST, [older, SELL_STOP]
    )
    assert long.stop_price == Decimal("1670.00")
    short = rebuilt_position(
        "ESZ13", (-1, Decimal("1680")), (-1, None), True, T0, LAST, [SELL_STOP]
    )
    assert short.stop_price is None, "a sell stop does not protect a short"
    rolled = rebuilt_position("ESH14", (1, Decimal("1680")), (1, None), True, T0, LAST, [SELL_STOP])
    assert rolled.stop_price is None, "a stop of another contract does not protect it"


def test_the_signal_sequence_continues_past_every_id_the_session_used() -> None:
    used = [
        client_order_id(SID, 3, 0),
        attached_stop_id(client_order_id(SID, 5, 1)),
        move_stop_id(SID, 7),
        client_order_id("another-session", 40, 0),
        "external-123",
    ]
    assert signal_seq_after(SID, used, snapshot_seq=2) == 7
    assert signal_seq_after(SID, used, snapshot_seq=9) == 9
    assert signal_seq_after(SID, [], snapshot_seq=0) == 0


def test_orders_decided_after_a_snapshot_are_those_numbered_past_its_sequence() -> None:
    """A session resumed at its snapshot decides those again, with the same ids (an entry's
    attached stop is not a signal's order: it follows its entry)."""
    later = client_order_id(SID, 6, 0)
    used = [
        client_order_id(SID, 5, 1),
        attached_stop_id(later),
        later,
        move_stop_id(SID, 7),
        client_order_id("another-session", 40, 0),
        "external-123",
    ]
    assert decided_after(SID, used, 5) == {later, move_stop_id(SID, 7)}
    assert decided_after(SID, used, 7) == frozenset()
