"""Recovery when the instrument's stream went with the sessions' Redis: the candles come back
from the session's market-data source's history (replay: the Lean files), joined to what the
stream holds again, folded exactly as the tick path folds the stream; with nothing published
since (the feed publishes again from the sessions' snapshots), the session resumes at its
snapshot: its cursor, counters, partial candle and strategy state."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from tests.kit.fleet import CONTRACT, Fleet
from tests.kit.replay import replay_ticks
from trading.candles import fold_ticks
from trading.timeframes import parse_timeframe
from workers.recovery.recover import recover_session
from workers.runtime import Runtime
from workers.ticks.keys import stream_key, subscribers_key
from workers.ticks.publisher import epoch_ms
from workers.ticks.snapshots import load_snapshot

pytestmark = pytest.mark.integration

LOST_AT = 2_400
"""Ticks published before the loss: 600 one-minute bars, four ticks each."""
AFTER = 8
"""Ticks published again after the loss: two bars, far fewer candles than the warm-up."""
QUIET = {"reconcile_positions_interval_s": 600.0, "reconcile_orders_interval_s": 600.0}


def test_a_session_whose_stream_was_lost_is_warmed_from_its_sources_history(
    redis_url: str, tmp_path: Path
) -> None:
    ticks = replay_ticks()
    with Fleet(redis_url, tmp_path, **QUIET) as rig:
        sid = rig.create("sma", "ACC-HIST")
        rig.start_worker(queues=("ticks", "orders"))
        rig.publish_replay(ticks[:LOST_AT])
        rig.wait_settled()
        signals_before = rig.progress("sma").signal_seq
        lost = list(rig.client.scan_iter(match="tf:*", count=1_000))
        rig.client.delete(*lost, stream_key(CONTRACT), subscribers_key(CONTRACT))
        assert rig.client.exists(stream_key(CONTRACT)) == 0
        rig.publish_replay(ticks[LOST_AT : LOST_AT + AFTER])
        report = recover_session(Runtime(rig.settings), sid)
        state = rig.state(sid)

    assert report.outcome == "recovered", report
    expected = fold_ticks(None, ticks[: LOST_AT + AFTER], parse_timeframe("1m"))
    need = 8 + 1  # sma_cross slow=8: its warm-up, and one more
    assert len(state.candles) >= need
    assert list(state.candles) == list(expected.closed[-len(state.candles) :])
    assert state.latest_partial_candle == expected.partial
    assert signals_before > 0, "the session traded before the loss"
    assert cast(int, len(state.candles)) < len(expected.closed), "only what it needs came back"


def test_a_session_whose_redis_restarted_empty_resumes_at_its_snapshot(
    redis_url: str, tmp_path: Path
) -> None:
    """Redis restarted empty (the broker keeps its own): the session comes back as it was at
    its last snapshot, its cursor there, so the entries the feed publishes again carry it on
    as if nothing had happened (without this it started at the empty stream's end, its tick
    counters restarted, the ticks after its snapshot never processed)."""
    ticks = replay_ticks()
    with Fleet(redis_url, tmp_path, **QUIET) as rig:
        sid = rig.create("sma", "ACC-RESUME")
        rig.start_worker(queues=("ticks", "orders"))
        rig.publish_replay(ticks[:LOST_AT])
        rig.wait_settled()
        snapshot = load_snapshot(rig.engine, sid)
        rig.client.flushdb()  # the fleet's Redis only: the paper broker's is db 1
        report = recover_session(Runtime(rig.settings), sid)
        state, progress, cursor = rig.state(sid), rig.progress("sma"), rig.cursor(sid)

    assert snapshot is not None and snapshot.resumable
    assert report.outcome == "recovered", report
    assert report.details["resumed_at_snapshot"] is True
    assert cursor == snapshot.cursor
    assert progress.ticks_processed == snapshot.ticks_processed > 0
    assert progress.candles_closed == snapshot.candles_closed
    assert progress.signal_seq == snapshot.signal_seq
    assert state.strategy.state == snapshot.strategy_state
    upto = [t for t in ticks[:LOST_AT] if epoch_ms(t) <= int(cursor.partition("-")[0])]
    expected = fold_ticks(None, upto, parse_timeframe("1m"))
    assert state.latest_partial_candle == expected.partial
    assert len(state.candles) >= 8 + 1
    assert list(state.candles) == list(expected.closed[-len(state.candles) :])
