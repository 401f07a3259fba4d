"""The per-session and per-account limits besides heat, on real workers: the maximum position
per session refuses an entry beyond it; an account that reached its daily loss limit has its
entries refused for that trade date, while another account trades the same signal."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from tests.kit.cli import run_cli
from tests.kit.fleet import Fleet
from tests.kit.replay import SessionPlan, replay_ticks
from tests.workers.risk.test_heat import ARGS, decisions, position_of, risk_events
from trading.risk import RiskLevels
from workers.db.engines import make_engine, upgrade
from workers.risk.accounts import AccountChange, restore_account, set_account, set_halted
from workers.risk.book import RiskBook, risk_key
from workers.settings import DatabaseSettings, RedisSettings, Settings

pytestmark = pytest.mark.integration


def test_an_entry_beyond_the_maximum_position_is_refused(redis_url: str, tmp_path: Path) -> None:
    """Maximum position 1: the session trading 2 contracts has its first entry refused with
    an event and stays flat; the session trading 1 contract takes the same signal."""
    ticks = replay_ticks()
    first = decisions(ticks, 1)[0]
    plans = [
        SessionPlan("big", "ACC-MAXP-BIG", "sma_cross", ARGS, quantity=2),
        SessionPlan("small", "ACC-MAXP-SMALL", "sma_cross", ARGS, quantity=1),
    ]
    with Fleet(redis_url, tmp_path / "run", risk_max_position=1) as rig:
        rig.create_sessions(plans)
        rig.start_workers(count=1, concurrency=2)
        rig.publish_replay(ticks[: first.publish_until])
        rig.wait_settled()
        assert position_of(rig, "small") == first.target
        assert rig.broker_positions("ACC-MAXP-SMALL") == {"ESZ13": first.target}
        assert position_of(rig, "big") == 0
        assert rig.broker_positions("ACC-MAXP-BIG") == {}
        assert rig.sql_orders("big") == []
        refused = [m for m in risk_events(rig, "big") if "exceeds the maximum position" in m]
        assert len(refused) == 1, risk_events(rig, "big")
        assert not any("refused" in m for m in risk_events(rig, "small"))
        shown = run_cli(rig.cli_env(), "session", "show", rig.session_ids["small"], "--json")
        assert shown.returncode == 0, shown.describe()
        view = json.loads(shown.stdout)
        book = RiskBook(rig.client, rig.settings.risk).read("ACC-MAXP-SMALL")
        assert book.equity is not None and book.total > 0
        assert Decimal(view["portfolio_heat"]) == (book.total / book.equity).quantize(
            Decimal("0.000001")
        )
        assert view["portfolio_heat_warned"] is False
        assert view["portfolio_heat_blocked"] is False


def test_an_account_past_its_daily_loss_refuses_entries_for_the_day(
    redis_url: str, tmp_path: Path
) -> None:
    """The account lost 100 today against a 50 limit (booked as a fill's realized P&L would
    be): the session on it has its entry refused for ``daily_loss``; the same loss on the
    day before blocks nothing, and a session on another account takes the same signal."""
    ticks = replay_ticks()
    first = decisions(ticks, 1)[0]
    trade_date = ticks[first.publish_until - 1].time.date().isoformat()
    plans = [
        SessionPlan("loser", "ACC-LOSS", "sma_cross", ARGS),
        SessionPlan("other", "ACC-FINE", "sma_cross", ARGS),
    ]
    with Fleet(redis_url, tmp_path / "run") as rig:
        rig.create_sessions(plans)
        book = RiskBook(rig.client, rig.settings.risk)
        for account in ("ACC-LOSS", "ACC-FINE"):
            set_account(rig.engine, book, account, AccountChange(max_daily_loss=Decimal(50)))
        assert not book.add_realized("ACC-LOSS", trade_date, Decimal("-40"))
        assert book.add_realized("ACC-FINE", "2013-10-01", Decimal("-100"))
        assert book.add_realized("ACC-LOSS", trade_date, Decimal("-60"))
        assert book.read("ACC-LOSS").loss_day == trade_date
        rig.start_workers(count=1, concurrency=2)
        rig.publish_replay(ticks[: first.publish_until])
        rig.wait_settled()
        assert position_of(rig, "loser") == 0
        assert rig.broker_positions("ACC-LOSS") == {}
        assert any("daily_loss" in m for m in risk_events(rig, "loser")), risk_events(rig, "loser")
        assert position_of(rig, "other") == first.target
        assert rig.broker_positions("ACC-FINE") == {"ESZ13": first.target}


def test_an_accounts_levels_and_halt_come_back_from_sql_after_redis_loses_them(
    redis_client: redis.Redis, sqlite_url: str
) -> None:
    """The levels and the halted flag are kept in SQL; when the sessions' Redis loses the risk
    hash, recovery puts them back, keeping any value an operator wrote in the meantime."""
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    settings = Settings(
        redis=RedisSettings(url="redis://unused:1/0"), database=DatabaseSettings(url=sqlite_url)
    )
    book = RiskBook(redis_client, settings.risk)
    change = AccountChange(Decimal("0.03"), Decimal("0.05"), Decimal("2000"))
    set_account(engine, book, "ACC-LOST", change)
    set_halted(engine, book, "ACC-LOST", True)
    set_account(engine, book, "ACC-KEPT", change)
    redis_client.delete(risk_key("ACC-LOST"), risk_key("ACC-KEPT"))
    lost = book.read("ACC-LOST")
    book.set_levels("ACC-KEPT", RiskLevels(Decimal("0.04"), Decimal("0.08"), Decimal("0.01")))

    assert restore_account(engine, book, "ACC-LOST")
    assert restore_account(engine, book, "ACC-KEPT")
    assert not restore_account(engine, book, "ACC-NO-ROW")
    back, kept = book.read("ACC-LOST"), book.read("ACC-KEPT")
    engine.dispose()

    assert (lost.halted, lost.heat_warn, lost.max_daily_loss) == (False, Decimal("0.06"), None)
    assert (back.halted, back.heat_warn, back.heat_block) == (
        True,
        Decimal("0.03"),
        Decimal("0.05"),
    )
    assert back.max_daily_loss == Decimal("2000")
    assert (kept.heat_warn, kept.heat_block) == (Decimal("0.04"), Decimal("0.08"))
    assert not kept.halted and kept.max_daily_loss == Decimal("2000")
