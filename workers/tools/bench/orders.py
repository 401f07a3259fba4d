"""The benchmark's orders phase: a share of the sessions decide a market order at one minute
boundary, as a live minute does, and the orders worker sends each and applies its fill.

Every session of the phase runs ``sma_cross`` with ``fast=1, slow=2``: after two closed
candles it buys when its last close is above the one before, and does nothing while they are
equal. Each session gets one tick per round, at the same price in every round, except that
the traders' price is one grid step up from the third round on:

1. two warm-up rounds (data time in the past) close the first candle;
2. the control round, a minute before the boundary, closes the second candle: every session
   runs its strategy and none trades (equal closes);
3. the boundary round, published at the wall-clock minute boundary with that time as its
   data time, closes the third candle: the traders (``share`` of the sessions) buy one
   contract at market, and the paper broker fills each on the boundary tick itself.

CPU per order is what the boundary round cost more than the control round (redis-server, the
tick workers and the orders worker summed; the same steps close a candle in both), divided by
the orders: the order's row and send on the tick path, the send, the broker's work (in the
orders worker and Redis) and the fill. The benchmark process (the feed) is left out: it polls
for the fills. Latency is the probe's (``workers.ticks.latency_probe``): tick (the boundary)
to order accepted by the broker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from models.tables import OrderRow
from trading.exceptions import ServiceUnavailable
from workers.db.engines import engine_for
from workers.ticks.latency_probe import ORDERS_LATENCY_KEY
from workers.ticks.publisher import RawTick
from workers.tools.bench.cpu import CpuSpent
from workers.tools.bench.env import BenchEnv
from workers.tools.bench.load import Chunk, cpu_now, final_samples, wait_drained

ORDER_STRATEGY_ARGS = {"fast": "1", "slow": "2"}
"""Two candles of warm-up; then a buy at the first close above the one before."""
PRICE = Decimal("4000.00")
STEP = Decimal("0.25")
FILLS_TIMEOUT_S = 120.0
FILLS_POLL_S = 0.02
SLACK_S = 3.0
"""The warm-up and control rounds are drained at least this long before the boundary."""


@dataclass(frozen=True, slots=True)
class OrdersRun:
    """The figures of one orders phase."""

    sessions: int
    orders: int
    """Orders the traders decided at the boundary (each filled, or the phase fails)."""
    accepted_us: list[int]
    """Tick (the boundary) to order accepted by the broker, per order, in microseconds."""
    decided_us: list[int]
    """Tick to decision of the boundary round's steps, in microseconds."""
    control: CpuSpent
    boundary: CpuSpent
    fills_s: float
    """From the boundary until every order's fill was applied."""

    @classmethod
    def empty(cls) -> OrdersRun:
        nothing = CpuSpent(0.0, 0.0, 0.0, 0.0, 0.0, True)
        return cls(0, 0, [], [], nothing, nothing, 0.0)

    @property
    def cpu_ms_per_order(self) -> float:
        """The boundary round's CPU above the control round's, per order (feed left out)."""
        return sum(self.part_ms_per_order().values())

    def part_ms_per_order(self) -> dict[str, float]:
        """The same, by part."""
        if not self.orders:
            return {}
        parts = {"redis": "redis_s", "tick workers": "ticks_s", "orders worker": "orders_s"}
        extra = {
            name: max(0.0, getattr(self.boundary, attr) - getattr(self.control, attr))
            for name, attr in parts.items()
        }
        return {name: seconds / self.orders * 1_000 for name, seconds in extra.items()}


def run_orders(
    env: BenchEnv, instruments: Sequence[str], share: float, wall: datetime | None = None
) -> OrdersRun:
    """The phase over sessions of ``instruments`` (created here); ``share`` of them trade."""
    env.create_sessions(instruments, ORDER_STRATEGY_ARGS)
    every = max(1, round(1 / share))
    traders = {name for n, name in enumerate(instruments) if n % every == 0}
    now = wall or datetime.now(UTC)
    boundary = _next_minute(now + timedelta(seconds=SLACK_S + 3 * _round_s(instruments)))
    env.client.delete(ORDERS_LATENCY_KEY)
    # Warm-up: two rounds in the past close the first candle.
    for back in (3, 2):
        _round(env, instruments, traders, boundary - timedelta(minutes=back, seconds=-1), False)
        wait_drained(env, instruments, timeout_s=60.0)
    final_samples(env)
    control_at = boundary - timedelta(minutes=1, seconds=-1)
    _sleep_until(control_at)
    before = cpu_now(env)
    _round(env, instruments, traders, control_at, True)
    wait_drained(env, instruments, timeout_s=55.0)
    final_samples(env)
    control = CpuSpent.between(before, cpu_now(env))
    _sleep_until(boundary)
    before = cpu_now(env)
    started = time.monotonic()
    _round(env, instruments, traders, boundary, True)
    wait_drained(env, instruments, timeout_s=60.0)
    orders = _wait_filled(env, instruments, len(traders))
    fills_s = time.monotonic() - started
    decided = final_samples(env)
    spent = CpuSpent.between(before, cpu_now(env))
    accepted = [int(v) for v in env.client.lrange(ORDERS_LATENCY_KEY, 0, -1)]  # type: ignore[union-attr]
    return OrdersRun(len(instruments), orders, accepted, decided, control, spent, fills_s)


def _round(
    env: BenchEnv, instruments: Sequence[str], traders: set[str], at: datetime, up: bool
) -> None:
    """One tick per session at data time ``at``; the traders' one step up when ``up``."""
    t_ms = str(int(at.timestamp() * 1000))
    batch: Chunk = {}
    for name in instruments:
        price = PRICE + STEP if up and name in traders else PRICE
        row: RawTick = (t_ms, str(price), "1", "", "")
        batch[name] = [row]
    env.publisher.publish_many(batch)


def _wait_filled(env: BenchEnv, instruments: Sequence[str], expected: int) -> int:
    """Poll until the phase's sessions hold ``expected`` filled orders; returns the count."""
    ids = [env.sessions[name] for name in instruments]
    query = (
        select(func.count())
        .select_from(OrderRow)
        .where(OrderRow.session_id.in_(ids), OrderRow.status == "filled")
    )
    deadline = time.monotonic() + FILLS_TIMEOUT_S
    engine = engine_for(env.settings.sqlalchemy_url)
    while True:
        with DbSession(engine) as db:
            filled = int(db.scalar(query) or 0)
        if filled >= expected:
            return filled
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                f"orders phase: {filled} of {expected} orders filled within "
                f"{FILLS_TIMEOUT_S:.0f}s; see the orders worker's log"
            )
        time.sleep(FILLS_POLL_S)


def _round_s(instruments: Sequence[str]) -> float:
    """A generous guess of one round's time, to place the boundary after the warm-up."""
    return 1.0 + len(instruments) / 1_000


def _next_minute(at: datetime) -> datetime:
    floor = at.replace(second=0, microsecond=0)
    return floor if floor == at else floor + timedelta(minutes=1)


def _sleep_until(at: datetime) -> None:
    """Wait for the wall clock to reach ``at`` (the rounds are due at wall-clock times)."""
    while (left := (at - datetime.now(UTC)).total_seconds()) > 0:
        time.sleep(min(left, 0.5))
