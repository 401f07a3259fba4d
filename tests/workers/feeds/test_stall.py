"""Stall protection: the pure rule, the pure entry refusal (exits pass), Globex hours, and the
watch on real Redis and SQL (flag + one event, cleared + one event when data flows)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import EventRow
from tests.kit.wait import wait_until
from trading.intents import intents_for
from trading.market_hours import globex_open
from trading.risk import refuse_entries_while_stalled
from workers.db.engines import engine_for, upgrade
from workers.feeds.stall import StallRule, StallWatch
from workers.risk.feed_stall import feed_stalled, stall_key

NOW = datetime(2026, 10, 6, 15, 0, tzinfo=UTC)


def test_rule_stalls_once_in_market_hours_and_recovers_once() -> None:
    rule = StallRule(stall_s=10, quiet_since=0.0)
    assert rule.check(9.0, market_open=True) is None
    assert rule.check(10.0, market_open=True) == "stalled"
    assert rule.check(50.0, market_open=True) is None  # one event, not one per check
    assert rule.data(51.0) == "flowing"
    assert rule.data(52.0) is None


def test_rule_counts_quiet_time_from_the_open() -> None:
    rule = StallRule(stall_s=10, quiet_since=0.0)
    assert rule.check(1000.0, market_open=False) is None
    assert rule.check(1005.0, market_open=True) is None
    assert rule.check(1010.0, market_open=True) == "stalled"


def test_entries_refused_exits_pass_while_stalled() -> None:
    entry = intents_for(0, 1, None, "go long")
    outcome = refuse_entries_while_stalled(entry, "ESZ6", NOW)
    assert outcome.intents == [] and outcome.events[0].details["reason"] == "feed_stalled"
    exit_only = intents_for(1, 0, None, "flat")
    assert refuse_entries_while_stalled(exit_only, "ESZ6", NOW).intents == exit_only
    reverse = intents_for(1, -1, None, "reverse")
    kept = refuse_entries_while_stalled(reverse, "ESZ6", NOW).intents
    assert [i.intent for i in kept] == ["exit"]


def test_globex_hours() -> None:
    assert globex_open(datetime(2026, 10, 6, 15, 0, tzinfo=UTC))  # Tuesday 10:00 CT
    assert not globex_open(datetime(2026, 10, 6, 21, 30, tzinfo=UTC))  # 16:30 CT halt
    assert not globex_open(datetime(2026, 10, 10, 15, 0, tzinfo=UTC))  # Saturday
    assert globex_open(datetime(2026, 10, 11, 22, 30, tzinfo=UTC))  # Sunday 17:30 CT


@pytest.mark.integration
def test_watch_flags_and_records_then_clears(redis_client: redis.Redis, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    upgrade(url)
    engine = engine_for(url)
    watch = StallWatch(redis_client, engine, "ESZ6", 0.3, lambda _now: True, interval_s=0.05)
    watch.start()
    try:
        wait_until(lambda: feed_stalled(redis_client, "ESZ6"), what="the stall flag")
        assert redis_client.exists(stall_key("ESZ6"))
        watch.data()
        assert not feed_stalled(redis_client, "ESZ6")
    finally:
        watch.stop()
    with Session(engine) as db:
        rows = db.scalars(select(EventRow).where(EventRow.kind == "feed").order_by(EventRow.id))
        messages = [(r.severity, r.message) for r in rows]
    assert [s for s, _ in messages] == ["warning", "info"], messages
    assert "stalled" in messages[0][1] and "flows again" in messages[1][1]
