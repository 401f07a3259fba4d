"""A rig for roll tests: a fleet (private Redis, sessions in db 0, the paper broker in db 1,
SQLite) with real workers on ``rolls,orders,ticks``, and helpers to give a session a position
through the real order path, to price both contracts, and to watch a roll."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from models.state import SessionState, WorkingOrder
from models.tables import RollRow
from tests.kit.fleet import CONTRACT, Fleet
from tests.kit.replay import StrategySpec, replay_ticks
from tests.kit.wait import wait_until
from tests.kit.workers import CeleryWorker
from trading.market import Tick
from workers.db.order_rows import insert_order_if_absent
from workers.db.roll_rows import get_roll
from workers.db.session_rows import get_session_row
from workers.orders.send import send_order
from workers.rolls import chain
from workers.rolls.steps import PAUSED_KEY
from workers.state.store import StateChanges

NEW_CONTRACT = "ESH14"
QUEUES = ("rolls", "orders", "ticks")
PRIME_TICKS = 400
QUIET: StrategySpec = ("sma_cross", (("fast", "3"), ("slow", "400")))
"""A strategy that never trades within these tests (its warm-up is 400 candles)."""
FAST = {"roll_fill_retry_s": 0.2, "lock_ttl_ms": 2_000}


@dataclass(frozen=True, slots=True)
class Prices:
    """The test's prints: the old contract at ``old`` and the new one at ``new``."""

    old: Decimal
    new: Decimal

    @property
    def spread(self) -> Decimal:
        return self.new - self.old


class RollRig(Fleet):
    """A fleet whose sessions run a quiet strategy by default and whose rolls retry fast."""

    default_strategy = QUIET

    def __init__(self, redis_url: str, workdir: Path, **overrides: Any) -> None:
        super().__init__(redis_url, workdir, **{**FAST, **overrides})

    # ------------------------------------------------------------ workers and sessions

    def start_roll_worker(self, pause_at: str = "", concurrency: int = 2) -> CeleryWorker:
        """A worker on ``rolls,orders,ticks``; ``pause_at`` a roll step to pause after (the
        test-only ``roll_test_pause_at``)."""
        env = {"TRADEFLEET_ROLL_TEST_PAUSE_AT": pause_at} if pause_at else {}
        return self.start_worker(queues=QUEUES, concurrency=concurrency, env=env)

    def prime(self, count: int = PRIME_TICKS) -> tuple[Tick, ...]:
        """Publish the first ``count`` real ESZ13 ticks and wait until every session read them."""
        ticks = replay_ticks()[:count]
        self.publish_replay(ticks)
        self.wait_read()
        return ticks

    def give_position(self, session_id: str, account: str, quantity: int, at: datetime) -> None:
        """An entry decided at ``at`` through the real order path (row, working copy, send)."""
        order = WorkingOrder(
            client_order_id=f"test-entry-{account}",
            contract=CONTRACT,
            side="buy" if quantity > 0 else "sell",
            quantity=abs(quantity),
            order_type="market",
            intent="entry",
            status="new",
            created_at=at,
        )
        insert_order_if_absent(self.engine, session_id, order, at, "day")
        with self.rt.store.locked(session_id, wait_s=5) as lease:
            orders = {**lease.value("orders"), order.client_order_id: order}
            self.rt.store.write(lease, StateChanges.of({"orders": orders}))
        assert send_order(self.rt, session_id, order.client_order_id).status == "filled"
        held = self.state(session_id).open_position
        assert held is not None and held.quantity == quantity

    def price(self, after: datetime, prices: Prices) -> None:
        """One print of each contract just after ``after`` (the old one first)."""
        publisher = self.publisher()
        for offset, contract, value in ((1, CONTRACT, prices.old), (2, NEW_CONTRACT, prices.new)):
            tick = Tick(contract, after + timedelta(seconds=offset), value, 5)
            publisher.publish(contract, [tick])

    # ------------------------------------------------------------ rolls

    def start_roll(self, session_id: str, to: str | None = None) -> RollRow:
        return chain.start_roll(self.rt, self.app, session_id, to)

    def roll(self, roll_id: int) -> RollRow:
        row = get_roll(self.engine, roll_id)
        assert row is not None
        return row

    def wait_status(self, roll_id: int, *statuses: str, timeout: float = 60) -> RollRow:
        wait_until(
            lambda: self.roll(roll_id).status in statuses,
            timeout=timeout,
            interval=0.05,
            what=f"roll {roll_id} to be {'/'.join(statuses)}",
        )
        return self.roll(roll_id)

    def paused_at(self, roll_id: int) -> str | None:
        raw = cast(bytes | None, self.client.get(PAUSED_KEY.format(roll_id=roll_id)))
        return None if raw is None else raw.decode().split(":", 1)[0]

    def clear_pause(self, roll_id: int) -> None:
        self.client.delete(PAUSED_KEY.format(roll_id=roll_id))

    def wait_redeliverable(self, timeout: float = 40) -> None:
        """Every task the killed worker held is older than the visibility timeout, so a new
        worker's start-up restores it (kombu's ``unacked_index``: message -> delivery time)."""
        limit = self.settings.queues.visibility_timeout_s + 0.5

        def old_enough() -> bool:
            entries = cast(list[Any], self.client.zrange("unacked_index", 0, -1, withscores=True))
            return all(score < time.time() - limit for _, score in entries)

        wait_until(old_enough, timeout=timeout, interval=0.2, what="unacked tasks to expire")

    def session_row_contract(self, session_id: str) -> str:
        found = get_session_row(self.engine, session_id)
        assert found is not None
        return found.contract


def assert_rolled(
    rig: RollRig,
    session_id: str,
    account: str,
    roll: RollRow,
    quantity: int,
    before: SessionState,
    prices: Prices | None,
) -> None:
    """Everything a finished roll must leave behind, in Redis, SQL and at the broker."""
    after = rig.state(session_id)
    assert roll.status == "done" and roll.step == "done", roll.error
    assert roll.quantity == quantity
    assert after.session.contract == NEW_CONTRACT == after.contract_details.symbol
    assert after.candle_key == f"{NEW_CONTRACT}:1m"
    assert after.market_data_source.args["instrument"] == NEW_CONTRACT
    assert rig.session_row_contract(session_id) == NEW_CONTRACT
    assert (after.rolling, after.rolling_close_order_id, after.rolling_close_qty) == (
        False,
        None,
        None,
    )
    assert after.trading
    assert session_id in rig.subscribers(NEW_CONTRACT)
    assert session_id not in rig.subscribers(CONTRACT)
    spread = prices.spread if prices is not None else Decimal(0)
    old_candles: Mapping[datetime, Any] = {c.start: c for c in before.candles}
    assert old_candles, "the session must have candle history to adjust"
    for candle in after.candles:
        if candle.start in old_candles:
            assert candle.close == old_candles[candle.start].close + spread
            assert candle.high == old_candles[candle.start].high + spread
    position = after.open_position
    assert position is not None and position.contract == NEW_CONTRACT
    assert position.quantity == quantity
    if quantity:
        assert prices is not None
        assert (roll.close_fill_price, roll.open_fill_price) == (prices.old, prices.new)
        assert position.average_price == prices.new
        assert rig.broker_positions(account) == {NEW_CONTRACT: quantity}
        roll_orders = [o for o in rig.broker_orders(account) if o.startswith("roll-")]
        assert sorted(roll_orders) == [f"roll-{roll.id}-close", f"roll-{roll.id}-open"]
        rows = {row.client_order_id: row for row in rig.sql_orders(session_id=session_id)}
        close, open_ = rows[f"roll-{roll.id}-close"], rows[f"roll-{roll.id}-open"]
        assert (close.intent, close.contract, close.status) == ("exit", CONTRACT, "filled")
        assert (open_.intent, open_.contract, open_.status) == ("roll", NEW_CONTRACT, "filled")
        assert close.quantity == open_.quantity == abs(quantity)
        assert close.side == ("sell" if quantity > 0 else "buy") != open_.side
    else:
        assert rig.broker_positions(account) == {}
        assert not [o for o in rig.broker_orders(account) if o.startswith("roll-")]
    messages = [event.message for event in rig.events(session_id, "roll")]
    assert any(f"roll {roll.id} done" in m for m in messages), messages
