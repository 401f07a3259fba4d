"""A stopped session on real workers: ``tradefleet session stop`` takes a flat session out
(the tick path still folds its candles, its strategy decides nothing), ``tradefleet session
start`` puts it back and its strategy trades from the next closed candle."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.cli import run_cli
from tests.kit.fleet import Fleet
from tests.kit.replay import SessionPlan, replay_ticks
from tests.workers.risk.test_heat import ARGS, decisions

pytestmark = pytest.mark.integration


def test_a_stopped_session_decides_nothing_and_trades_again_once_started(
    redis_url: str, tmp_path: Path
) -> None:
    ticks = replay_ticks()
    entry, reversal, *_ = decisions(ticks, 3)
    with Fleet(redis_url, tmp_path / "run") as rig:
        sid = rig.create_sessions([SessionPlan("paused", "ACC-SS", "sma_cross", ARGS)])["paused"]
        stopped = run_cli(rig.cli_env(), "session", "stop", sid).ok()
        assert stopped.stdout.strip() == f"session paused ({sid}) is stopped, not trading"

        rig.start_worker(concurrency=2)
        rig.publish_replay(ticks[: entry.publish_until])
        rig.wait_settled()
        assert rig.sql_orders("paused") == []
        assert rig.quantity(sid) == 0
        assert rig.progress("paused").candles_closed == entry.candle_index + 1

        started = run_cli(rig.cli_env(), "session", "start", sid).ok()
        assert started.stdout.strip() == f"session paused ({sid}) is active, trading"
        rig.publish_replay(ticks[entry.publish_until : reversal.publish_until])
        rig.wait_settled()
        entries = [o for o in rig.sql_orders("paused") if o.intent == "entry"]
        assert entries, "the started session never entered"
        assert rig.quantity(sid) != 0
        operator = [(e.message, e.details["user"]) for e in rig.events(sid, "operator")]
        assert [m for m, _ in operator] == [
            f"session stopped (by {operator[0][1]})",
            f"session started (by {operator[0][1]})",
        ]
        assert operator[0][1].startswith("cli:")
