"""One scheduler: two real beat processes fire every fan-out twice, yet each period is
reconciled exactly once (the period guard), with real Redis and a real worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.fleet import Fleet
from tests.kit.wait import wait_until
from workers.reconcile.schedule import STATS_KEY, claim_period, guard_key, won_key

pytestmark = pytest.mark.integration

INTERVAL_S = 1.0
PERIODS = 5


def test_the_guard_gives_each_period_to_one_claimant(redis_client) -> None:
    now = 1_700_000_000.4
    assert claim_period(redis_client, "positions", 30, now, "a") == 56_666_666
    assert claim_period(redis_client, "positions", 30, now + 1, "b") is None
    assert claim_period(redis_client, "orders", 30, now, "c") == 56_666_666
    assert claim_period(redis_client, "positions", 30, now + 30, "d") == 56_666_667
    assert redis_client.get(guard_key("positions", 56_666_666)) == b"a"
    assert 59_000 < redis_client.pttl(guard_key("positions", 56_666_666)) <= 60_000
    assert redis_client.hgetall(STATS_KEY) == {
        b"positions:won": b"2",
        b"positions:skipped": b"1",
        b"orders:won": b"1",
    }


def test_two_beat_processes_yield_one_reconciliation_per_period(
    redis_url: str, tmp_path: Path
) -> None:
    with Fleet(
        redis_url,
        tmp_path,
        reconcile_positions_interval_s=INTERVAL_S,
        reconcile_orders_interval_s=INTERVAL_S,
    ) as rig:
        sid = rig.create("guarded", "ACC-GUARD")
        rig.start_worker(queues=("reconcile",), concurrency=2)
        rig.start_beat("beat-1")
        rig.start_beat("beat-2")
        try:

            def stat(name: str) -> int:
                return int(rig.client.hget(STATS_KEY, name) or 0)

            wait_until(
                lambda: stat("positions:won") >= PERIODS and stat("positions:skipped") >= PERIODS,
                timeout=40,
                interval=0.1,
                what=f"{PERIODS} periods fanned out by two beats",
            )
        finally:
            rig.stop_beats()
        won = stat("positions:won")
        wait_until(
            lambda: rig.reconcile_meta(sid).checks >= won, timeout=15, what="every pass to run"
        )
        periods = [int(i) for i in rig.client.lrange(won_key("positions"), 0, -1)]
        checks = rig.reconcile_meta(sid).checks
        orders_won = [int(i) for i in rig.client.lrange(won_key("orders"), 0, -1)]
        skipped = stat("positions:skipped")
    assert len(periods) == won == len(set(periods)), periods
    assert checks == won, f"{checks} passes for {won} periods"
    assert skipped >= PERIODS, "the second beat never fired"
    assert len(orders_won) == len(set(orders_won)) >= PERIODS - 1
