"""The host-kill drill's record of its kills (pure): a kill whose work did not go on within a
minute is a violation, and the summary tells kills that hit pending work from kills that
landed as it finished."""

from __future__ import annotations

from workers.tools.drill.host_kill import WENT_ON_WITHIN_S, KillLog


def test_work_that_went_on_within_the_minute_is_no_violation() -> None:
    log = KillLog()
    log.record("w1 sending a-1", pending=True, took_s=14.234)
    log.record("w2 at roll 1 await_close", pending=True, took_s=WENT_ON_WITHIN_S)
    assert log.violations() == []
    assert log.longest_s == WENT_ON_WITHIN_S
    assert log.kills[0].took_s == 14.23


def test_work_that_did_not_go_on_in_time_or_at_all_is_a_violation() -> None:
    log = KillLog()
    log.record("w1 sending a-1", pending=True, took_s=WENT_ON_WITHIN_S + 0.5)
    log.record("w3 at roll 2 switch", pending=True, took_s=None)
    assert log.violations() == [
        "after the kill of w1 sending a-1, the work did not go on within 60s",
        "after the kill of w3 at roll 2 switch, the work did not go on within 60s",
    ]


def test_the_summary_counts_pending_kills_and_their_longest_wait() -> None:
    log = KillLog()
    log.record("w1 sending a-1", pending=True, took_s=16.0)
    log.record("w2 at roll 1 close", pending=False, took_s=0.01)
    log.record("w2 at roll 1 await_close", pending=True, took_s=21.5)
    assert log.summary() == (
        "3 host kills, 2 with the work still pending (the others landed as it finished); "
        "the longest wait for it to go on 21.5s"
    )
    assert [k["pending"] for k in log.as_json()] == [True, False, True]
