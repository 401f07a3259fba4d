"""The fuzzed-feed drill on real workers: the reference replay and the same replay published by
a faulty feed (``workers.tools.drill.fuzz``) end the same (fills, orders, positions, candles,
the broker's books), and every bad entry is counted by its reason, in each session's
``_progress`` and in ``tradefleet_ticks_rejected_total``; the unknown instrument touched
nothing but its own stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.fleet import Fleet
from tests.kit.metrics import counted
from tests.kit.redis import RedisServer
from tests.kit.replay import REFERENCE_PLANS, replay_ticks
from tests.kit.runs import reference_run
from tests.kit.snapshots import CONTRACT, assert_consistent
from workers.metrics.catalog import TICKS_REJECTED
from workers.ticks.keys import READY_KEY, source_key, stream_key
from workers.ticks.publisher import encode_tick
from workers.tools.drill.fuzz import UNKNOWN, fuzz_feed

pytestmark = pytest.mark.integration

SEED = 18
UNCHANGED = ("progress", "cursor", "events")
"""What the faults may change: the rejected counts, the stream ids, the data warnings."""


def test_a_fuzzed_feed_changes_nothing_but_the_counts(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    reference = reference_run(redis_server, tmp_path / "reference")
    client = redis_server.client()
    client.flushall()
    plan = fuzz_feed({CONTRACT: [encode_tick(t) for t in replay_ticks()]}, SEED)
    with Fleet(redis_server.url, tmp_path / "fuzzed") as rig:
        rig.create_sessions(REFERENCE_PLANS)
        rig.start_worker(concurrency=1)
        results = plan.publish(rig.publisher())
        rig.published = sum(r.published for r in results) - plan.at_publish["unknown_instrument"]
        rig.wait_settled()
        fuzzed = rig.snapshot()
        metrics = counted(rig.client, TICKS_REJECTED)
        unknown_keys = {k.decode() for k in rig.client.scan_iter(match=f"*{UNKNOWN}*")}
        ready = rig.client.zrange(READY_KEY, 0, -1)
    client.close()

    assert sum(r.duplicates for r in results) == plan.at_publish["duplicate"] > 0
    assert sum(r.unread for r in results) == plan.at_publish["unknown_instrument"] > 0
    assert_consistent(fuzzed)
    rejected = {reason: n for reason, n in plan.per_reader[CONTRACT].items() if n}
    assert set(rejected) == {"unparseable", "bad_price", "bad_size", "time_backwards"}
    assert set(fuzzed.sessions) == set(reference.sessions)
    for name, snap in fuzzed.sessions.items():
        want, got = reference.sessions[name], snap
        assert len(want.fills) >= 2, f"{name} should trade on the replay"
        mine, theirs = got.comparable(), want.comparable()
        for key in mine.keys() - set(UNCHANGED):
            assert mine[key] == theirs[key], f"{name}: {key} differs"
        assert got.progress.rejected == rejected, name
        assert got.progress.ticks_processed == want.progress.ticks_processed, name
        assert got.progress.candles_closed == want.progress.candles_closed, name
        assert got.progress.signal_seq == want.progress.signal_seq, name
        warnings = [e for e in got.events if e[0] == "data"]
        assert sorted(warnings) == sorted(
            ("data", "warning", f"bad tick rejected: {reason}") for reason in rejected
        ), name
        assert [e for e in got.events if e[0] != "data"] == list(want.events), name
    assert metrics == plan.rejected_total({CONTRACT: len(REFERENCE_PLANS)})
    assert unknown_keys == {stream_key(UNKNOWN), source_key(UNKNOWN)}
    assert ready == []
