"""The console's read model of the fleet on real Redis and PostgreSQL: the no-tick rule on
the session's clock, the lag behind its stream, the broker's position the position check
recorded, the accounts' daily loss."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.kit.fleet import Fleet
from tests.kit.replay import replay_ticks
from trading.market import epoch_ms
from workers.operations.account_view import accounts_view
from workers.operations.fleet import STALE_AFTER, fleet_view
from workers.reconcile.position_check import reconcile_positions
from workers.risk.accounts import AccountChange, set_account
from workers.risk.book import RiskBook
from workers.state.broker_seen import read_broker_seen

pytestmark = pytest.mark.integration


def open_market(_: datetime) -> bool:
    return True


def closed_market(_: datetime) -> bool:
    return False


def as_if_live(_: str) -> bool:
    """Every feed taken as printing live (these sessions replay history: their ticks' age in
    wall time is the history's)."""
    return True


def test_a_session_without_ticks_is_stale_only_past_the_threshold_while_the_market_is_open(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path / "run", database_url=pg_url) as rig:
        sid = rig.create("quiet", "ACC-Q")
        created = rig.state(sid).session.created_at
        soon = created + STALE_AFTER - timedelta(seconds=1)
        late = created + timedelta(minutes=10)
        (view,) = fleet_view(rig.rt, soon, is_open=open_market, live_feed=as_if_live).sessions
        assert (view.status, view.reasons) == ("trading", ())
        (view,) = fleet_view(rig.rt, late, is_open=open_market, live_feed=as_if_live).sessions
        assert (view.status, view.reasons) == ("stale", ("no tick in 10 min",))
        (view,) = fleet_view(rig.rt, late, is_open=closed_market, live_feed=as_if_live).sessions
        assert view.status == "trading"
        assert view.tick_age_s is None and view.last_tick_at is None


def test_the_lag_is_the_data_time_a_session_has_not_read_and_its_clock_is_its_last_tick(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    ticks = replay_ticks()[:300]
    with Fleet(redis_url, tmp_path / "run", database_url=pg_url) as rig:
        sid = rig.create("lagging", "ACC-L")
        (view,) = fleet_view(rig.rt).sessions
        assert view.tick_lag_ms is None
        rig.publish_replay(ticks)
        (view,) = fleet_view(rig.rt).sessions
        assert view.tick_lag_ms == epoch_ms(ticks[-1].time) - epoch_ms(ticks[0].time)
        assert view.candles_closed == 0 and view.last_tick_at is None

        rig.start_worker()
        rig.wait_read()
        now = ticks[-1].time + timedelta(seconds=30)
        (view,) = fleet_view(rig.rt, now, is_open=open_market, live_feed=as_if_live).sessions
        assert view.tick_lag_ms == 0
        assert view.last_tick_at is not None
        assert epoch_ms(view.last_tick_at) == epoch_ms(ticks[-1].time)
        assert view.tick_age_s == 30
        assert view.candles_closed == rig.progress("lagging").candles_closed > 0
        assert view.status == "trading"
        late = ticks[-1].time + timedelta(minutes=5)
        (view,) = fleet_view(rig.rt, late, is_open=open_market, live_feed=as_if_live).sessions
        assert (view.status, view.reasons) == ("stale", ("no tick for 5 min",))
        assert rig.cursor(sid) == rig.last_id()


def test_the_position_check_records_the_brokers_answer_for_the_console(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path / "run", database_url=pg_url) as rig:
        sid = rig.create("checked", "ACC-C")
        assert read_broker_seen(rig.client, ["ACC-C"]) == {}
        before = datetime.now(UTC)
        assert reconcile_positions(rig.rt, sid).outcome == "in_sync"
        seen = read_broker_seen(rig.client, ["ACC-C"])[("ACC-C", "ESZ13")]
        assert (seen.quantity, seen.average_price, seen.fills_pending) == (0, None, 0)
        assert before <= seen.as_of <= datetime.now(UTC)
        (view,) = fleet_view(rig.rt, seen.as_of + timedelta(seconds=12)).sessions
        assert view.broker is not None
        assert (view.broker.quantity, view.broker.age_s, view.broker_check) == (0, 12, "match")


def test_an_account_shows_its_day_against_its_daily_loss_limit(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    with Fleet(redis_url, tmp_path / "run", database_url=pg_url) as rig:
        rig.create("loser", "ACC-D")
        book = RiskBook(rig.client, rig.settings.risk)
        set_account(rig.engine, book, "ACC-D", AccountChange(max_daily_loss=Decimal(500)))
        assert not book.add_realized("ACC-D", "2013-10-04", Decimal("120.50"))
        assert not book.add_realized("ACC-D", "2013-10-07", Decimal("-300.25"))
        assert book.add_realized("ACC-D", "2013-10-07", Decimal("-250"))
        (account,) = accounts_view(rig.rt, fleet_view(rig.rt))
        assert (account.day, account.day_pnl) == ("2013-10-07", Decimal("-550.25"))
        assert account.max_daily_loss == Decimal(500) and account.loss_day == "2013-10-07"
        assert account.totals is not None and account.totals.sessions == 1
