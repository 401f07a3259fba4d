"""Protective stops on the real replay through a real worker (``TRADEFLEET_PROTECTIVE_STOPS``
on): the breakout session's entries carry attached stops, every touch the tick step saw is
one stop fill at the broker, at the stop or worse, and the run ends consistent."""

from __future__ import annotations

import pytest

from tests.conftest import RedisServer
from tests.integration import worker as worker_fixtures
from tests.integration.tickpath_harness import (
    RunResult,
    assert_consistent,
    reference_run,
)

pytestmark = pytest.mark.integration

start_worker = worker_fixtures.start_worker
STOPS = {"protective_stops": True}


@pytest.fixture(scope="module")
def reference(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return reference_run(redis_server, tmp_path_factory.mktemp("stops-reference"), **STOPS)


def test_the_breakout_session_trades_with_stops_that_fill_in_data_time(
    reference: RunResult,
) -> None:
    assert_consistent(reference)
    snap = reference.sessions["breakout"]
    entries = [o for o in snap.orders if o.intent == "entry"]
    stops = [o for o in snap.orders if o.key.startswith("stop-")]
    assert entries and len(stops) >= len(entries)
    assert {o.status for o in stops} >= {"filled", "cancelled"}
    touched = [e for e in snap.events if e[2].startswith("protective stop")]
    filled = [f for f in snap.fills if f.key.startswith("stop-")]
    assert len(touched) == len(filled) > 0
    for fill in filled:
        stop = next(o for o in stops if o.key == fill.key)
        assert stop.stop_price is not None and stop.decided_at is not None
        assert fill.filled_at > stop.decided_at
        worse = (
            fill.price >= stop.stop_price if stop.side == "buy" else fill.price <= stop.stop_price
        )
        assert worse, (fill, stop)
    assert not [o for o in reference.sessions["sma-fast"].orders if o.key.startswith("stop-")]
