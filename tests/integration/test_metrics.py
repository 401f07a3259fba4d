"""The fleet's metrics after a real replay through real worker processes (prefork, two pool
children) on the paper broker, with PostgreSQL: ``/metrics`` agrees with what SQL and the
sessions' state hold.

What must agree, exactly:
- ``tradefleet_ticks_processed_total`` = the ticks replayed times the sessions reading them
  = the sum of the sessions' ``_progress.ticks_processed``; none rejected;
- ``tradefleet_tick_lag_seconds_count`` = the entries consumed (ticks processed + rejected);
- ``tradefleet_candles_closed_total`` = the sum of the sessions' ``_progress.candles_closed``;
- ``tradefleet_fills_total`` = the rows of ``fills``;
- ``tradefleet_orders_total{outcome="created"}`` = the rows of ``orders`` (none external);
  for each final status (filled, cancelled, rejected, lost) the outcome's count = the rows in
  that status (a final row never moves again; only a fill may end a cancelled one, which this
  replay never sees); ``working`` >= the rows working now (every row working now got there);
- each session's position and realized P&L gauges = its state's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.tables import FillRow, OrderRow
from tests.kit.fleet import Fleet
from tests.kit.replay import DEFAULT_PLANS, replay_ticks
from tests.kit.wait import wait_until
from workers.db.order_rows import FINAL_STATUSES
from workers.web.app import create_app

pytestmark = pytest.mark.integration

TOKEN = "fleet-scrape-token-0123456789"


def sample(family: Family, suffix: str = "", **labels: str) -> float:
    (value,) = [
        s.value for s in family.samples if s.name == family.name + suffix and s.labels == labels
    ]
    return float(value)


def test_a_replay_through_real_workers_is_counted_as_sql_and_the_states_hold_it(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path / "fleet", database_url=pg_url) as fleet:
        fleet.create_sessions(DEFAULT_PLANS)
        fleet.start_workers(count=1, concurrency=2)
        published = fleet.publish_replay(replay_ticks())
        fleet.wait_settled()
        app = create_app(fleet.with_settings(metrics_token=TOKEN))
        with TestClient(app) as client:

            def scrape() -> dict[str, Family]:
                answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
                assert answer.status_code == 200, answer.text
                return {f.name: f for f in text_string_to_metric_families(answer.text)}

            def disagreements() -> list[str]:
                families = scrape()
                wrong = [
                    f"{name}: /metrics {shown} != {held}"
                    for name, shown, held in expected(fleet, families, published)
                    if shown != held
                ]
                working = sample(families["tradefleet_orders"], "_total", outcome="working")
                if working < rows_in(fleet, "working"):
                    wrong.append(f"orders working {working} < {rows_in(fleet, 'working')}")
                return wrong

            try:
                wait_until(lambda: not disagreements(), timeout=30, what="metrics to agree")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {disagreements()}") from exc
            families = scrape()
    orders = families["tradefleet_orders"]
    assert sample(orders, "_total", outcome="created") > 4, "the replay should trade"
    assert sample(orders, "_total", outcome="filled") > 4
    assert sample(families["tradefleet_fills"], "_total") > 4


def rows_in(fleet: Fleet, status: str) -> int:
    with Session(fleet.engine) as db:
        return int(db.scalar(select(func.count()).where(OrderRow.status == status)) or 0)


def expected(
    fleet: Fleet, families: dict[str, Family], published: int
) -> list[tuple[str, float, float]]:
    """(what, /metrics shows, SQL or the state holds) for everything that must be equal."""
    progress = [fleet.progress(name) for name in fleet.session_ids]
    processed = sum(p.ticks_processed for p in progress)
    with Session(fleet.engine) as db:
        fills = db.scalar(select(func.count()).select_from(FillRow)) or 0
        rows = db.scalar(select(func.count()).select_from(OrderRow)) or 0
    orders = families["tradefleet_orders"]
    pairs: list[tuple[str, float, float]] = [
        ("ticks processed", sample(families["tradefleet_ticks_processed"], "_total"), processed),
        ("ticks replayed x sessions", processed, published * len(progress)),
        (
            "ticks rejected",
            sum(s.value for s in families["tradefleet_ticks_rejected"].samples),
            sum(p.ticks_rejected for p in progress),
        ),
        (
            "tick lag count",
            sample(families["tradefleet_tick_lag_seconds"], "_count"),
            fleet.consumed(),
        ),
        (
            "candles closed",
            sample(families["tradefleet_candles_closed"], "_total"),
            sum(p.candles_closed for p in progress),
        ),
        ("fills", sample(families["tradefleet_fills"], "_total"), fills),
        ("orders created", sample(orders, "_total", outcome="created"), rows),
        ("orders external", sample(orders, "_total", outcome="external"), 0),
    ]
    pairs += [
        (f"orders {status}", sample(orders, "_total", outcome=status), rows_in(fleet, status))
        for status in sorted(FINAL_STATUSES)
    ]
    for name, session_id in fleet.session_ids.items():
        labels = {"session": name, "account": fleet.accounts[name], "product": "ES"}
        state = fleet.state(session_id)
        position = 0 if state.open_position is None else state.open_position.quantity
        shown = sample(families["tradefleet_session_position_contracts"], **labels)
        pairs.append((f"{name} position", shown, position))
        realized = families["tradefleet_session_realized_pnl_dollars"]
        pnl = float(state.account_pnl_info.realized)
        pairs.append((f"{name} realized P&L", sample(realized, **labels), pnl))
    return pairs
