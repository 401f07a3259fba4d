"""Portfolio heat on real workers: racing entries near the limit, a blocked account still
exits (a blocked reversal goes flat only), warn fires once per crossing, ``tradefleet risk``.

Expectations come from the real replay folded here with the same pure functions the tick
path uses (candles, the strategy, the default k x ATR stop distance), so the limits can be
set between one and two (or two and three) entries' risk exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from models.codec import decode_field, encode_state
from tests.kit.cli import run_cli
from tests.kit.fleet import Fleet
from tests.kit.replay import SessionPlan, replay_ticks
from tests.workers.stops.test_stop_watch import LONG, TRAILING
from tests.workers.ticks.test_tick_step import RISING, SID, entries_of, initial_state, minute_ticks
from trading.candles import fold_ticks
from trading.market import Tick
from trading.risk import RiskLevels, default_stop_distance
from trading.strategies import StrategyContext, call_strategy, get_strategy
from trading.timeframes import parse_timeframe
from workers.risk.accounts import AccountChange, set_account
from workers.risk.book import RiskBook
from workers.settings import RiskSettings, Settings
from workers.ticks.step import SessionStep

pytestmark = pytest.mark.integration


ARGS = (("fast", "3"), ("slow", "8"))
MULTIPLIER = Decimal(50)
EQUITY = Decimal(100_000)


@dataclass(frozen=True)
class Decision:
    candle_index: int
    target: int
    risk: Decimal
    """The entry's risk (1 contract x multiplier x k x ATR), as the tick path computes it."""
    publish_until: int
    """How many replay ticks to publish so that this candle, and no later one, closes."""


def decisions(ticks: tuple[Tick, ...], count: int) -> list[Decision]:
    """The first ``count`` signals of sma_cross(3, 8) on the replay, position following them."""
    step = parse_timeframe("1m")
    candles = fold_ticks(None, list(ticks), step, last_time=None).closed
    strategy = get_strategy("sma_cross")
    args = strategy.validate_args(dict(ARGS))
    warmup = strategy.warmup_periods(args)
    state = strategy.initial_state(args)
    need = max(warmup, 1) + 1
    position, found = 0, []
    settings = Settings()
    for index in range(len(candles)):
        if index + 1 < warmup:
            continue
        window = candles[max(0, index + 1 - need) : index + 1]
        context = StrategyContext(
            candles=window,
            position=position,
            contract="ESZ13",
            tick_size=Decimal("0.25"),
            balance=None,
            now=candles[index].start + step.delta,
            state=state,
        )
        signals, state = call_strategy(strategy, context, args)
        for signal in signals:
            distance = default_stop_distance(
                window, settings.risk.atr_mult, settings.risk.atr_periods
            )
            close_at = candles[index].start + step.delta
            until = next(i for i, t in enumerate(ticks) if t.time >= close_at) + 1
            found.append(Decision(index, signal.target_position, distance * MULTIPLIER, until))
            position = signal.target_position
        if len(found) >= count:
            return found
    raise AssertionError("the replay has too few signals")


def position_of(rig: Fleet, name: str) -> int:
    return rig.quantity(rig.session_ids[name])


def risk_events(rig: Fleet, name: str) -> list[str]:
    return [event.message for event in rig.events(rig.session_ids[name], "risk")]


def test_sessions_racing_near_the_limit_only_what_fits_is_accepted(
    redis_url: str, tmp_path: Path
) -> None:
    """Six sessions on one account decide the same entry on the same candle, on two workers
    with two processes each; the block level fits two entries, not three: exactly two are
    accepted, four refused with an event, and the broker holds two contracts."""
    ticks = replay_ticks()
    first = decisions(ticks, 1)[0]
    block = (first.risk * Decimal("2.5") / EQUITY).quantize(Decimal("0.00000001"))
    warn = (first.risk * Decimal("1.5") / EQUITY).quantize(Decimal("0.00000001"))
    plans = [SessionPlan(f"racer-{i}", "ACC-RACE", "sma_cross", ARGS) for i in range(6)]
    with Fleet(redis_url, tmp_path / "run") as rig:
        rig.create_sessions(plans)
        book = RiskBook(rig.client, rig.settings.risk)
        set_account(rig.engine, book, "ACC-RACE", AccountChange(heat_warn=warn, heat_block=block))
        rig.start_workers(count=2, concurrency=2)
        rig.publish_replay(ticks[: first.publish_until])
        rig.wait_settled()
        positions = {plan.name: position_of(rig, plan.name) for plan in plans}
        held = [name for name, qty in positions.items() if qty != 0]
        assert len(held) == 2, positions
        assert all(positions[name] == first.target for name in held)
        assert rig.broker_positions("ACC-RACE") == {"ESZ13": 2 * first.target}
        refused = [
            p.name for p in plans if any("refused: heat" in m for m in risk_events(rig, p.name))
        ]
        assert sorted(refused) == sorted(set(positions) - set(held))
        state = book.read("ACC-RACE")
        assert set(state.sessions) == {rig.session_ids[name] for name in held}
        assert state.equity is not None and state.total <= block * state.equity
        assert state.warned and state.rejected == 4
        warnings = [
            m for p in plans for m in risk_events(rig, p.name) if "reached the warn level" in m
        ]
        assert len(warnings) == 1, warnings
        for name in held:
            heat = decode_field("portfolio_heat", rig.field(name, "portfolio_heat") or "")
            assert heat > 0, name


def test_blocked_account_still_exits_and_a_blocked_reversal_goes_flat(
    redis_url: str, tmp_path: Path
) -> None:
    ticks = replay_ticks()
    entry, reversal = decisions(ticks, 2)
    assert entry.target != 0 and reversal.target == -entry.target, (entry, reversal)
    plan = SessionPlan("lone", "ACC-BLOCK", "sma_cross", ARGS)
    with Fleet(redis_url, tmp_path / "run") as rig:
        rig.create_sessions([plan])
        rig.start_workers(count=1, concurrency=2)
        rig.publish_replay(ticks[: entry.publish_until])
        rig.wait_settled()
        assert position_of(rig, "lone") == entry.target
        assert rig.broker_positions("ACC-BLOCK") == {"ESZ13": entry.target}
        book = RiskBook(rig.client, rig.settings.risk)
        tiny = Decimal("0.00000001")
        set_account(rig.engine, book, "ACC-BLOCK", AccountChange(heat_warn=tiny, heat_block=tiny))
        shown = run_cli(rig.cli_env(), "risk", "--account", "ACC-BLOCK", "--json")
        assert shown.returncode == 0, shown.describe()
        (view,) = json.loads(shown.stdout)
        assert view["blocked"] and view["blocked_by"] == ["heat"]
        assert view["heat_block"] == "0.00000001" or Decimal(view["heat_block"]) == 0
        (session_view,) = view["sessions"]
        assert session_view["position"] == entry.target and Decimal(session_view["risk"]) > 0
        text = run_cli(rig.cli_env(), "risk", "--account", "ACC-BLOCK")
        assert "BLOCKED (heat)" in text.stdout, text.describe()

        rig.publish_replay(ticks[entry.publish_until : reversal.publish_until])
        rig.wait_settled()
        assert position_of(rig, "lone") == 0
        assert rig.broker_positions("ACC-BLOCK") == {}
        assert any("entry refused: heat" in m for m in risk_events(rig, "lone"))
        assert book.read("ACC-BLOCK").sessions == {}
        exits = [row for row in rig.sql_orders("lone") if row.intent == "exit"]
        assert len(exits) == 1 and exits[0].status == "filled"
        blocked = rig.field("lone", "portfolio_heat_blocked") or ""
        assert decode_field("portfolio_heat_blocked", blocked) is False


def test_warn_fires_once_per_crossing_with_hysteresis(redis_client: redis.Redis) -> None:
    settings = Settings(risk=RiskSettings(heat_hysteresis=Decimal("0.01")))
    book = RiskBook(redis_client, settings.risk)
    levels = RiskLevels(Decimal("0.06"), Decimal("0.10"), Decimal("0.01"))
    book.set_levels("ACC-W", levels)
    per = Decimal(1_000)
    changes = []
    # equity 100,000: 1,000 per contract is 1 % of heat per contract
    for qty in (3, 6, 7, 6, 5, 6, 7, 4, 6, 2, 0):
        answer = book.set_position("ACC-W", "s1", qty, per, EQUITY)
        changes.append(answer.warn_change)
    # up at 6; held through 7/6/5.x (clears only below 5 %); down at 4; up again at 6; down 2
    assert changes == [0, 1, 0, 0, 0, 0, 0, -1, 1, -1, 0]
    refused = book.reserve("ACC-W", "s2", Decimal(10_001), per, None, "2013-10-07")
    assert not refused.accepted and refused.reason == "heat"
    fits = book.reserve("ACC-W", "s2", Decimal(10_000), per, None, "2013-10-07")
    assert fits.accepted and fits.blocked and fits.heat == Decimal("0.1")
    assert book.read("ACC-W").sessions == {"s2": Decimal(10_000)}
    exit_always = book.set_position("ACC-W", "s2", 0, None, None)
    assert exit_always.accepted and exit_always.total == 0 and not exit_always.blocked


def test_a_moved_stop_measures_the_position_heat_to_the_new_stop(
    redis_client: redis.Redis,
) -> None:
    """A trailing breakout holding one ES long at stop 99 moves its stop under each close (the
    tick step, with the real risk book in Redis): the session's open risk on the account is
    then |close - new stop| x 50, not the entry's distance, and its heat fields follow."""
    book = RiskBook(redis_client, Settings().risk)
    book.set_levels("ACC-UNIT", RiskLevels(Decimal("0.06"), Decimal("0.10"), Decimal("0.01")))
    assert book.set_position("ACC-UNIT", SID, 1, Decimal(500), EQUITY).accepted
    state = initial_state(
        strategy=TRAILING, warmup_periods=3, open_position=LONG, account_balance=EQUITY
    )
    fields = dict(encode_state(state).hash)
    step = SessionStep(SID, fields, lambda count: [], book)
    result = step.run(entries_of(minute_ticks(RISING[:3])))

    (event,) = [e for e in result.events if e.message.startswith("stop moved")]
    assert event.message == "stop moved from 99 to 101.00"
    # the third candle closed at 102, its stop trailed to 101: 1 point x 50 = 50
    assert book.read("ACC-UNIT").sessions == {SID: Decimal(50)}
    heat = decode_field("portfolio_heat", result.fields["portfolio_heat"])
    assert heat == Decimal("0.0005")
