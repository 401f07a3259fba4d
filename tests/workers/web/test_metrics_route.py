"""``/metrics`` on the console's app, against a real Redis and PostgreSQL: served only with the
bearer token (401 without it or with another, 404 when none is set), in Prometheus' text
format, showing the counters kept in Redis and the sessions' and accounts' gauges."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from models.state import OpenPosition, PnlInfo
from tests.kit.redis import paper_url
from trading.fleet_view import STATUSES
from trading.reconcile import ReconcileMeta
from trading.risk import RiskLevels
from workers.db.engines import upgrade
from workers.metrics.catalog import FILLS, ORDERS, RECONCILE_LAST_SUCCESS
from workers.metrics.counters import count, mark_now
from workers.operations.fleet import fleet_view
from workers.operations.stop import stop_session
from workers.risk.book import RiskBook
from workers.risk.feed_stall import clear_stalled, set_stalled
from workers.runtime import Runtime
from workers.sessions.create import NewSession, create_session
from workers.settings import Settings, grouped
from workers.state.store import StateChanges, StateStore
from workers.web.app import create_app

pytestmark = pytest.mark.integration

TOKEN = "scrape-token-0123456789abcdef"
ACCOUNT = "ACC-M"
DASHBOARD = Path(__file__).parents[3] / "ops" / "grafana" / "tradefleet-dashboard.json"


def settings_for(redis_url: str, pg_url: str, token: str) -> Settings:
    return Settings(
        **grouped(
            {
                "TRADEFLEET_REDIS_URL": redis_url,
                "TRADEFLEET_PAPER_BROKER_URL": paper_url(redis_url),
                "TRADEFLEET_DATABASE_URL": pg_url,
                "TRADEFLEET_METRICS_TOKEN": token,
            }
        )
    )


@pytest.fixture
def database(pg_url: str) -> str:
    upgrade(pg_url)
    return pg_url


@pytest.fixture
def client(redis_url: str, database: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(redis_url, database, TOKEN))) as test_client:
        yield test_client


def scrape(client: TestClient) -> dict[str, Family]:
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(answer.text)}


def value(family: Family, suffix: str = "", **labels: str) -> float:
    found = [
        s.value for s in family.samples if s.name == family.name + suffix and s.labels == labels
    ]
    assert len(found) == 1, (family.name, suffix, labels, family.samples)
    return float(found[0])


def statuses(families: dict[str, Family]) -> dict[str, float]:
    """``tradefleet_sessions`` by its status label."""
    return {s.labels["status"]: s.value for s in families["tradefleet_sessions"].samples}


def dashboard_metrics() -> set[str]:
    """Every metric the Grafana dashboard's queries name."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) > 20
    return {name for expr in exprs for name in re.findall(r"tradefleet_\w+", expr)}


def test_without_a_configured_token_the_route_is_not_served(redis_url: str, database: str) -> None:
    with TestClient(create_app(settings_for(redis_url, database, ""))) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
        assert client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        TOKEN,
    ],
)
def test_a_missing_or_wrong_token_is_refused(client: TestClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "tradefleet" not in answer.text


def test_the_counters_read_zero_then_what_the_workers_counted(
    client: TestClient, redis_client: redis.Redis
) -> None:
    families = scrape(client)
    assert value(families["tradefleet_fills"], "_total") == 0
    assert value(families["tradefleet_orders"], "_total", outcome="created") == 0
    assert value(families["tradefleet_tick_lag_seconds"], "_count") == 0
    assert statuses(families) == dict.fromkeys(STATUSES, 0)
    count(redis_client, FILLS, n=3)
    count(redis_client, ORDERS, "cancelled")
    families = scrape(client)
    assert value(families["tradefleet_fills"], "_total") == 3
    assert value(families["tradefleet_orders"], "_total", outcome="cancelled") == 1
    assert families["tradefleet_fills"].type == "counter"
    assert families["tradefleet_tick_lag_seconds"].type == "histogram"
    assert b"tradefleet" not in generate_latest(REGISTRY)


def test_a_scraper_asking_for_openmetrics_gets_it(client: TestClient) -> None:
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
    }
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    names = {family.name for family in openmetrics_families(answer.text)}
    assert {"tradefleet_fills", "tradefleet_tick_lag_seconds"} <= names


def test_sessions_and_accounts_are_read_at_scrape_time(
    client: TestClient, redis_url: str, database: str, redis_client: redis.Redis
) -> None:
    settings = settings_for(redis_url, database, TOKEN)
    request = NewSession("es-metrics", ACCOUNT, "ES", "ESZ13", "sma_cross", {"fast": "3"})
    session_id = create_session(settings, request).session.id
    create_session(settings, NewSession("es-other", ACCOUNT, "ES", "ESZ13", "sma_cross", {}))
    store = StateStore(redis_client, settings.state.lock_ttl_ms)
    opened = datetime(2013, 10, 7, 14, 0, tzinfo=UTC)
    with store.locked(session_id, wait_s=5) as lease:
        pnl = PnlInfo(Decimal("125.50"), Decimal("-37.50"), Decimal("4.20"))
        meta = {"_reconcile": ReconcileMeta(failures=1, stale=True).to_json()}
        position = OpenPosition("ESZ13", -2, Decimal("1700.25"), opened_at=opened)
        changes = {"open_position": position, "account_pnl_info": pnl}
        store.write(lease, StateChanges.of(changes, meta=meta))
    book = RiskBook(redis_client, settings.risk)
    book.set_levels(
        ACCOUNT, RiskLevels(Decimal("0.05"), Decimal("0.1"), Decimal("0.01"), Decimal(500))
    )
    book.reserve(ACCOUNT, session_id, Decimal(1000), Decimal(500), Decimal(100_000), "2013-10-07")
    assert book.add_realized(ACCOUNT, "2013-10-07", Decimal("-612.50"))
    book.set_halted(ACCOUNT, True)
    mark_now(redis_client, RECONCILE_LAST_SUCCESS, "positions")

    families = scrape(client)
    labels = {"session": "es-metrics", "account": ACCOUNT, "product": "ES"}
    other = {**labels, "session": "es-other"}
    assert value(families["tradefleet_session_position_contracts"], **labels) == -2
    assert value(families["tradefleet_session_position_contracts"], **other) == 0
    assert value(families["tradefleet_session_realized_pnl_dollars"], **labels) == 125.5
    assert value(families["tradefleet_session_unrealized_pnl_dollars"], **labels) == -37.5
    assert value(families["tradefleet_session_commissions_dollars"], **labels) == 4.2
    for each in (labels, other):
        assert value(families["tradefleet_session_trading"], **each) == 0
        assert value(families["tradefleet_session_stale"], **each) == 0
    assert statuses(families) == {**dict.fromkeys(STATUSES, 0), "halted": 2}
    account = {"account": ACCOUNT}
    assert value(families["tradefleet_account_heat_ratio"], **account) == 0.01
    assert value(families["tradefleet_account_heat_warn_ratio"], **account) == 0.05
    assert value(families["tradefleet_account_heat_block_ratio"], **account) == 0.1
    assert value(families["tradefleet_account_open_risk_dollars"], **account) == 1000
    assert value(families["tradefleet_account_equity_dollars"], **account) == 100_000
    assert value(families["tradefleet_account_halted"], **account) == 1
    assert value(families["tradefleet_account_day_realized_pnl_dollars"], **account) == -612.5
    assert value(families["tradefleet_account_max_daily_loss_dollars"], **account) == 500
    assert value(families["tradefleet_account_daily_loss_reached"], **account) == 1
    last = families["tradefleet_reconcile_last_success_timestamp_seconds"]
    assert time.time() - 60 < value(last, check="positions") <= time.time()

    shown = {sample.name for family in families.values() for sample in family.samples}
    assert dashboard_metrics() <= shown, dashboard_metrics() - shown

    redis_client.delete(f"tf:{{{session_id}}}:state")
    families = scrape(client)
    assert statuses(families) == {**dict.fromkeys(STATUSES, 0), "needs_operator": 1, "halted": 1}
    assert value(families["tradefleet_session_trading"], **labels) == 0
    held = {s.labels["session"] for s in families["tradefleet_session_position_contracts"].samples}
    assert held == {"es-other"}


def session_flags(families: dict[str, Family]) -> dict[str, tuple[float, float]]:
    """Per session shown: (``tradefleet_session_trading``, ``tradefleet_session_stale``)."""
    trading = {s.labels["session"]: s.value for s in families["tradefleet_session_trading"].samples}
    stale = {s.labels["session"]: s.value for s in families["tradefleet_session_stale"].samples}
    assert trading.keys() == stale.keys()
    return {name: (trading[name], stale[name]) for name in trading}


def test_a_session_is_counted_under_the_status_the_console_shows(
    client: TestClient, redis_url: str, database: str, redis_client: redis.Redis
) -> None:
    settings = settings_for(redis_url, database, TOKEN)
    made = {
        name: create_session(
            settings, NewSession(name, account, product, contract, "sma_cross", {})
        ).session.id
        for name, account, product, contract in [
            ("gc-trading", "ACC-T", "GC", "GCZ13"),
            ("es-stalled", "ACC-S", "ES", "ESZ13"),
            ("es-halted", "ACC-HALTED", "ES", "ESZ13"),
            ("nq-stopped", "ACC-T", "NQ", "NQZ13"),
        ]
    }
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    stop_session(rt, made["nq-stopped"], "ops")
    assert set_stalled(redis_client, "ESZ13", datetime.now(UTC), 30.0)
    RiskBook(redis_client, settings.risk).set_halted("ACC-HALTED", True)

    console = {view.name: (view.status, view.reasons) for view in fleet_view(rt).sessions}
    assert console == {
        "gc-trading": ("trading", ()),
        "es-stalled": ("stale", ("feed stalled",)),
        "es-halted": ("halted", ("account halted", "feed stalled")),
        "nq-stopped": ("stopped", ("stopped", "not trading")),
    }
    families = scrape(client)
    stalled = {"session": "es-stalled", "account": "ACC-S", "product": "ES"}
    assert value(families["tradefleet_session_stale"], **stalled) == 1
    assert session_flags(families) == {
        "gc-trading": (1, 0),
        "es-stalled": (0, 1),
        "es-halted": (0, 0),
    }
    assert statuses(families) == {
        **dict.fromkeys(STATUSES, 0),
        "trading": 1,
        "stale": 1,
        "halted": 1,
        "stopped": 1,
    }
    positions = families["tradefleet_session_position_contracts"].samples
    assert {s.labels["session"] for s in positions} == {"gc-trading", "es-stalled", "es-halted"}

    assert clear_stalled(redis_client, "ESZ13")
    families = scrape(client)
    assert session_flags(families)["es-stalled"] == (1, 0)
    assert statuses(families) == {
        **dict.fromkeys(STATUSES, 0),
        "trading": 2,
        "halted": 1,
        "stopped": 1,
    }
