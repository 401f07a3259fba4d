"""The kill switch on real workers: ``tradefleet halt --flatten`` leaves every session flat at
the broker and no session enters again until ``tradefleet resume``; its exits are counted as
every other order row is (``tradefleet_orders_total{outcome="created"}``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.tables import OrderRow
from tests.kit.cli import run_cli
from tests.kit.fleet import Fleet
from tests.kit.metrics import counted
from tests.kit.replay import SessionPlan, replay_ticks
from tests.kit.wait import wait_until
from tests.workers.risk.test_heat import ARGS, decisions, position_of, risk_events
from workers.metrics.catalog import ORDERS
from workers.risk.book import RiskBook

pytestmark = pytest.mark.integration


def order_rows(rig: Fleet) -> int:
    with Session(rig.engine) as db:
        return int(db.scalar(select(func.count()).select_from(OrderRow)) or 0)


def created(rig: Fleet) -> int:
    return counted(rig.client, ORDERS).get("created", 0)


def test_halt_with_flatten_leaves_every_session_flat_at_the_broker(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    ticks = replay_ticks()
    entry, reversal, *_ = decisions(ticks, 3)
    plans = [
        SessionPlan("one", "ACC-H1", "sma_cross", ARGS),
        SessionPlan("two", "ACC-H2", "sma_cross", ARGS),
    ]
    with Fleet(redis_url, tmp_path / "run", database_url=pg_url) as rig:
        rig.create_sessions(plans)
        rig.start_workers(count=1, concurrency=2)
        rig.publish_replay(ticks[: entry.publish_until])
        rig.wait_settled()
        for plan in plans:
            assert position_of(rig, plan.name) == entry.target
            assert rig.broker_positions(plan.account) == {"ESZ13": entry.target}

        halted = run_cli(rig.cli_env(), "halt", "--flatten")
        assert halted.returncode == 0, halted.describe()
        assert "2 exits sent" in halted.stdout
        rig.wait_settled()
        book = RiskBook(rig.client, rig.settings.risk)
        for plan in plans:
            assert rig.broker_positions(plan.account) == {}
            assert position_of(rig, plan.name) == 0
            assert book.read(plan.account).halted
            assert book.read(plan.account).sessions == {}
        wait_until(
            lambda: created(rig) == order_rows(rig),
            timeout=10,
            what=f"created {created(rig)} to be the {order_rows(rig)} order rows",
        )

        rig.publish_replay(ticks[entry.publish_until : reversal.publish_until])
        rig.wait_settled()
        for plan in plans:
            assert rig.broker_positions(plan.account) == {}, plan.name
            assert any("entry refused: halted" in m for m in risk_events(rig, plan.name))

        resumed = run_cli(rig.cli_env(), "resume", "--account", "ACC-H1")
        assert resumed.returncode == 0 and "resumed ACC-H1" in resumed.stdout
        assert not book.read("ACC-H1").halted and book.read("ACC-H2").halted
