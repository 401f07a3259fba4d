"""The console's pure rules: a session's status word, the broker check, account totals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading.fleet_view import (
    SessionFigures,
    StatusInputs,
    account_totals,
    broker_check,
    session_status,
)

NOW = datetime(2026, 12, 9, 16, 0, tzinfo=UTC)
AFTER = timedelta(seconds=120)
FINE = StatusInputs(
    sql_status="active",
    has_state=True,
    trading=True,
    rolling=False,
    account_halted=False,
    roll_status=None,
    ambiguous=False,
    broker_failing=False,
    feed_stalled=False,
    last_tick=NOW - timedelta(seconds=3),
    created_at=NOW - timedelta(days=1),
    market_open=True,
    live_feed=True,
)


def test_a_session_with_nothing_wrong_is_trading() -> None:
    assert session_status(FINE, NOW, AFTER) == ("trading", ())


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"sql_status": "stopped"}, "stopped", "stopped"),
        ({"roll_status": "needs_operator"}, "needs_operator", "roll needs operator"),
        ({"roll_status": "failed"}, "needs_operator", "roll failed"),
        ({"has_state": False}, "needs_operator", "no state in Redis (needs recovery)"),
        ({"trading": False}, "needs_operator", "not trading"),
        ({"ambiguous": True}, "needs_operator", "position ambiguous at the broker"),
        ({"account_halted": True}, "halted", "account halted"),
        ({"feed_stalled": True}, "stale", "feed stalled"),
        ({"last_tick": NOW - timedelta(minutes=5)}, "stale", "no tick for 5 min"),
        ({"last_tick": None, "created_at": NOW - timedelta(hours=3)}, "stale", "no tick in 3 h"),
        ({"broker_failing": True}, "stale", "broker not answering"),
        ({"rolling": True, "roll_status": "running"}, "rolling", "roll running"),
    ],
)
def test_each_rule_alone(change: dict[str, object], status: str, reason: str) -> None:
    assert session_status(replace(FINE, **change), NOW, AFTER) == (status, (reason,))


def test_a_quiet_feed_is_not_stale_while_the_market_is_closed() -> None:
    quiet = replace(FINE, last_tick=NOW - timedelta(hours=30), market_open=False)
    assert session_status(quiet, NOW, AFTER) == ("trading", ())


def test_a_replayed_feed_is_never_stale_for_the_age_of_its_history() -> None:
    replayed = replace(FINE, last_tick=NOW - timedelta(days=4000), live_feed=False)
    assert session_status(replayed, NOW, AFTER) == ("trading", ())
    stalled = replace(replayed, feed_stalled=True)
    assert session_status(stalled, NOW, AFTER) == ("stale", ("feed stalled",))


def test_a_rolling_session_that_stopped_trading_is_not_waiting_for_a_restart() -> None:
    rolling = replace(FINE, trading=False, rolling=True, roll_status="running")
    assert session_status(rolling, NOW, AFTER) == ("rolling", ("roll running",))


def test_the_first_status_that_applies_wins_and_every_reason_is_kept() -> None:
    everything = replace(
        FINE, account_halted=True, feed_stalled=True, rolling=True, roll_status="failed"
    )
    status, reasons = session_status(everything, NOW, AFTER)
    assert status == "needs_operator"
    assert reasons == ("roll failed", "account halted", "feed stalled", "roll running")
    halted_and_stale = replace(FINE, account_halted=True, feed_stalled=True)
    assert session_status(halted_and_stale, NOW, AFTER)[0] == "halted"
    stopped = replace(FINE, sql_status="stopped", account_halted=True)
    assert session_status(stopped, NOW, AFTER)[0] == "stopped"


def test_broker_check() -> None:
    read = NOW - timedelta(seconds=10)
    assert broker_check(2, None, None, 0, None) == "unknown"
    assert broker_check(2, 2, read, 0, read - timedelta(seconds=1)) == "match"
    assert broker_check(1, 2, read, 0, None) == "mismatch"
    assert broker_check(1, 2, read, 0, read + timedelta(seconds=1)) == "unverified"
    assert broker_check(1, 2, read, 1, None) == "unverified"


def test_account_totals_are_exact_sums_of_the_shown_figures() -> None:
    figures = [
        SessionFigures(
            "B", -1, Decimal("0.10"), Decimal("-12.5"), Decimal("2.1"), Decimal(0), Decimal(0)
        ),
        SessionFigures(
            "A",
            2,
            Decimal("0.1"),
            Decimal("0.2"),
            Decimal("1.05"),
            Decimal("900"),
            Decimal("0.009"),
        ),
        SessionFigures(
            "A",
            -1,
            Decimal("0.2"),
            Decimal("-0.3"),
            Decimal("1.05"),
            Decimal("100"),
            Decimal("0.001"),
        ),
    ]
    totals = account_totals(figures)
    assert list(totals) == ["A", "B"]
    a = totals["A"]
    assert (a.sessions, a.position) == (2, 1)
    assert a.realized == Decimal("0.3") and a.unrealized == Decimal("-0.1")
    assert a.commissions == Decimal("2.10") and a.risk == Decimal(1000)
    assert a.heat == Decimal("0.010")
    assert totals["B"].unrealized == Decimal("-12.5") and totals["B"].position == -1
