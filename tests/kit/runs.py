"""The replay of one day through one worker (the reference) or several, for the tick-path tests
to compare; snapshots and their comparison live in ``tests.kit.snapshots``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.kit.fleet import Fleet
from tests.kit.redis import RedisServer
from tests.kit.replay import REFERENCE_PLANS, SessionPlan, replay_ticks
from tests.kit.snapshots import RunResult, assert_consistent

_references: dict[tuple[tuple[SessionPlan, ...], tuple[tuple[str, Any], ...]], RunResult] = {}


def reference_run(
    server: RedisServer,
    workdir: Path,
    plans: tuple[SessionPlan, ...] = REFERENCE_PLANS,
    **overrides: Any,
) -> RunResult:
    """The replay through ONE worker process with ONE pool child: the reference every other
    run must equal. Computed once per test process and settings ``overrides`` (the private
    server is flushed first)."""
    key = (plans, tuple(sorted(overrides.items())))
    cached = _references.get(key)
    if cached is not None:
        return cached
    flush = server.client()
    flush.flushall()
    flush.close()
    with Fleet(server.url, workdir, **overrides) as fleet:
        fleet.create_sessions(plans)
        fleet.start_worker(concurrency=1)
        fleet.publish_replay(replay_ticks())
        fleet.wait_settled()
        result = fleet.snapshot()
    _references[key] = result
    return result


def workers_run(
    redis_url: str,
    workdir: Path,
    plans: tuple[SessionPlan, ...] = REFERENCE_PLANS,
    workers: int = 3,
    **overrides: Any,
) -> RunResult:
    """The replay through ``workers`` worker processes (two pool children each), settled and
    checked consistent: to compare with ``reference_run``."""
    with Fleet(redis_url, workdir, **overrides) as fleet:
        fleet.create_sessions(plans)
        fleet.start_workers(count=workers, concurrency=2)
        fleet.publish_replay(replay_ticks())
        fleet.wait_settled()
        result = fleet.snapshot()
    assert_consistent(result)
    return result
