"""``tradefleet bench``: the tick path's figures, measured through real worker processes.

Phases (all against a private redis-server, SQLite file and Celery workers started here):

1. flat out: synthetic ticks over ``sessions`` sessions (one contract each, so one tick is one
   session's work), published as fast as possible; ticks/s from the first publish until every
   session's cursor reached its stream's end.
2. latency: ``rate`` ticks/s offered over the same sessions for ``seconds``, each tick stamped
   with its due wall time; the drainers (``TRADEFLEET_LATENCY_PROBE=1``) record, per step, the
   age of its oldest tick when its state write completed: tick-to-decision latency.
3. the same at ``big_rate`` ticks/s over ``big_sessions`` sessions.
4. idle: the CPU of every process over ``idle_seconds`` with no ticks at all.
5. capacity: rounds of one tick for each of the ``big_sessions`` sessions, each round sent
   once the one before is drained (steps/s flat out, one tick per step), then paced runs at
   50 % and 80 % of that capacity: the figures judged in ratios of this host's own capacity.
6. orders: ``order_share`` of ``order_sessions`` more sessions decide a market order at one
   wall-clock minute boundary (``workers.tools.bench.orders``): CPU per order and its fill,
   and tick to order accepted by the broker.
7. baseline: the same step work as phase 1 (``SessionStep``) in this one process, with no
   Redis or Celery.

``BenchConfig.only`` runs one phase alone (its figures only; the others read 0).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from models.tables import OrderRow
from trading.exceptions import BadInput
from workers.db.engines import engine_for
from workers.tools.bench.cpu import CpuSpent
from workers.tools.bench.env import (
    STRATEGY,
    STRATEGY_ARGS,
    TIMEFRAME,
    BenchEnv,
    bench_env,
    instrument_names,
)
from workers.tools.bench.load import (
    Baseline,
    Capacity,
    Chunk,
    FlatOut,
    Paced,
    measure_capacity,
    measure_idle,
    percentile,
    processed_total,
    publish_flat_out,
    publish_paced,
    run_baseline,
    synthetic_chunks,
)
from workers.tools.bench.orders import OrdersRun, run_orders

Say = Callable[[str], None]


class Phase(StrEnum):
    """A phase of the benchmark, to run it alone (``--only``) while working on it."""

    FLAT = "flat"
    LATENCY = "latency"
    BIG = "big"
    IDLE = "idle"
    CAPACITY = "capacity"
    ORDERS = "orders"
    BASELINE = "baseline"


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """How big the benchmark is (the defaults are the full size, about 7 minutes)."""

    sessions: int = 200
    workers: int = 3
    """Tick worker processes: one more than the 2 cores the targets are set for, because a
    drainer waits for Redis during both round trips of each round; a third process fills the
    core the other two leave idle then."""
    seconds: float = 60.0
    """Length of each latency run: a whole minute holds one minute boundary, at which every
    session closes its 1m candle and runs its strategy, as a live minute does (the run's data
    time is the wall clock's, so a shorter run may hold one boundary or none)."""
    rate: float = 2_000.0
    big_sessions: int = 1_000
    big_rate: float = 10_000.0
    ticks: int = 600_000
    idle_seconds: float = 30.0
    capacity_rounds: int = 20
    order_sessions: int = 1_000
    order_share: float = 0.2
    only: Phase | None = None
    """Run this phase alone (the other figures read 0); None runs them all."""

    def __post_init__(self) -> None:
        if self.sessions < 1 or self.big_sessions < 1:
            raise BadInput("--sessions and --big-sessions must be at least 1")
        if self.workers < 1:
            raise BadInput("--workers must be at least 1")
        if not self.seconds > 0 or not self.rate > 0 or not self.big_rate > 0:
            raise BadInput("--seconds, --rate and --big-rate must be positive")
        if self.ticks < self.sessions:
            raise BadInput("--ticks must be at least one per session")
        if not self.idle_seconds > 0 or self.capacity_rounds < 1:
            raise BadInput("--idle-seconds must be positive and --capacity-rounds at least 1")
        if self.order_sessions < 1 or not 0 < self.order_share <= 1:
            raise BadInput("--order-sessions must be at least 1 and --order-share in (0, 1]")

    def runs(self, phase: Phase) -> bool:
        return self.only is None or self.only is phase


@dataclass(frozen=True, slots=True)
class BenchResult:
    """The figures; ``to_json`` is the machine-readable line (``--json``)."""

    ticks_per_s: float
    baseline_ticks_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_10k_p99_ms: float
    sessions: int
    workers: int
    end_to_end_ratio: float
    """End to end ÷ the in-process baseline."""
    capacity_steps_per_s: float
    latency_p99_ms_at_50pct: float
    latency_p99_ms_at_80pct: float
    idle_cores: float
    """Cores busy with no ticks for ``idle_seconds``, every process of the fleet summed."""
    cpu_us_per_step_2k: float
    cpu_us_per_step_10k: float
    cores_busy_10k: float
    cpu_ms_per_order: float
    """CPU of an order and its fill (the orders phase's boundary round above its control)."""
    orders_p99_ms: float
    """Tick (the minute boundary) to order accepted by the broker, p99."""

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class BenchReport:
    """The figures and what a reader needs to judge them."""

    config: BenchConfig
    result: BenchResult
    flat_ticks: int
    flat_seconds: float
    flat_publish_seconds: float
    flat_rejected: int
    baseline_ticks: int
    baseline_seconds: float
    orders: int
    baseline_orders: int
    latency: Paced
    latency_big: Paced
    idle: CpuSpent | None
    capacity: Capacity
    at_50pct: Paced
    at_80pct: Paced
    orders_run: OrdersRun

    @property
    def notes(self) -> list[str]:
        args = " ".join(f"{k}={v}" for k, v in STRATEGY_ARGS.items())
        return [
            f"strategy {STRATEGY} {args} on {TIMEFRAME} candles: it rarely trades, so the figures"
            " are the tick path's (orders go to the orders queue and its own worker)",
            "one contract per session: a tick consumed is one session's work",
            "latency = age of the oldest tick of each drain step when its state write completed"
            " (tick times are whole ms, so ages read up to 1 ms high)",
            "a latency run's data time is the wall clock's: at each minute boundary in it every"
            " session closes a candle and runs its strategy at once (its candle closes; p99.9"
            " and max show that burst)",
        ]


def run_bench(config: BenchConfig, say: Say) -> BenchReport:
    """Run the phases against a private deployment; ``say`` gets one-line progress."""
    small = instrument_names(config.sessions)
    big = instrument_names(max(config.big_sessions, config.sessions))[: config.big_sessions]
    chunks: list[Chunk] = []
    if config.runs(Phase.FLAT) or config.runs(Phase.BASELINE):
        say(f"generating {config.ticks:,} synthetic ticks over {len(small)} contracts")
        chunks = synthetic_chunks(small, config.ticks)
    flat, rejected = FlatOut(0, 0.0, 0.0), 0
    latency = latency_big = at_50pct = at_80pct = Paced.empty()
    idle: CpuSpent | None = None
    capacity = Capacity(0, 0.0)
    orders_run = OrdersRun.empty()
    orders = 0
    if config.only is not Phase.BASELINE:
        say(f"starting redis-server and {config.workers} tick worker process(es)")
        with bench_env(config.workers) as env:
            if config.runs(Phase.FLAT) or config.runs(Phase.LATENCY):
                spent = env.create_sessions(small)
                say(f"created {len(small)} sessions in {spent:.1f}s")
            if config.runs(Phase.FLAT):
                flat, rejected = _flat_out(env, small, chunks, say)
            if config.runs(Phase.LATENCY):
                say(
                    f"latency: {config.rate:,.0f} ticks/s over {len(small)} sessions, "
                    f"{config.seconds}s"
                )
                latency = publish_paced(env, small, config.rate, config.seconds)
                _say_paced(say, latency)
            if config.runs(Phase.BIG):
                spent = env.create_sessions(big)
                say(f"created {len(big)} sessions in all ({spent:.1f}s)")
                say(
                    f"latency: {config.big_rate:,.0f} ticks/s over {len(big)} sessions, "
                    f"{config.seconds}s"
                )
                latency_big = publish_paced(env, big, config.big_rate, config.seconds, seed=3)
                _say_paced(say, latency_big)
            if config.runs(Phase.IDLE):
                say(f"idle: no ticks for {config.idle_seconds:.0f}s")
                idle = measure_idle(env, config.idle_seconds)
                say(f"  {idle.cores():.4f} cores busy ({_parts(idle)})")
            if config.runs(Phase.CAPACITY):
                capacity, at_50pct, at_80pct = _capacity(env, big, config, say)
            if config.runs(Phase.ORDERS):
                orders_run = _orders(env, config, say)
            with DbSession(engine_for(env.settings.sqlalchemy_url)) as db:
                orders = int(db.scalar(select(func.count()).select_from(OrderRow)) or 0)
    baseline = Baseline(0, 0.0, 0)
    if config.runs(Phase.BASELINE):
        say("baseline: the same step work in this process, no Redis, no Celery")
        baseline = run_baseline(small, chunks)
        say(f"baseline: {baseline.ticks:,} ticks in {baseline.seconds:.2f}s")
    result = BenchResult(
        ticks_per_s=flat.ticks_per_s,
        baseline_ticks_per_s=baseline.ticks_per_s,
        latency_p50_ms=latency.percentile_ms(50),
        latency_p99_ms=latency.percentile_ms(99),
        latency_10k_p99_ms=latency_big.percentile_ms(99),
        sessions=config.sessions,
        workers=config.workers,
        end_to_end_ratio=(
            flat.ticks_per_s / baseline.ticks_per_s if baseline.ticks_per_s > 0 else 0.0
        ),
        capacity_steps_per_s=capacity.steps_per_s,
        latency_p99_ms_at_50pct=at_50pct.percentile_ms(99),
        latency_p99_ms_at_80pct=at_80pct.percentile_ms(99),
        idle_cores=idle.cores() if idle is not None else 0.0,
        cpu_us_per_step_2k=_cpu_per_step_us(latency),
        cpu_us_per_step_10k=_cpu_per_step_us(latency_big),
        cores_busy_10k=latency_big.cpu.cores() if latency_big.cpu is not None else 0.0,
        cpu_ms_per_order=orders_run.cpu_ms_per_order,
        orders_p99_ms=percentile(orders_run.accepted_us, 99) / 1000.0,
    )
    return BenchReport(
        config=config,
        result=result,
        flat_ticks=flat.ticks,
        flat_seconds=flat.seconds,
        flat_publish_seconds=flat.publish_seconds,
        flat_rejected=rejected,
        baseline_ticks=baseline.ticks,
        baseline_seconds=baseline.seconds,
        orders=orders,
        baseline_orders=baseline.orders,
        latency=latency,
        latency_big=latency_big,
        idle=idle,
        capacity=capacity,
        at_50pct=at_50pct,
        at_80pct=at_80pct,
        orders_run=orders_run,
    )


def _capacity(
    env: BenchEnv, instruments: Sequence[str], config: BenchConfig, say: Say
) -> tuple[Capacity, Paced, Paced]:
    """Phase 5: the capacity in one-tick steps, and the latency at half and 80 % of it."""
    spent = env.create_sessions(instruments)
    say(f"capacity: {config.capacity_rounds} rounds of one tick for each of {len(instruments)}")
    say(f"  sessions ({spent:.1f}s to create them)")
    capacity = measure_capacity(env, instruments, config.capacity_rounds)
    say(f"  {capacity.steps:,} steps in {capacity.seconds:.2f}s = {capacity.steps_per_s:,.0f}/s")
    runs = []
    for share in (0.5, 0.8):
        rate = share * capacity.steps_per_s
        say(f"latency at {share:.0%} of capacity: {rate:,.0f} ticks/s, {config.seconds}s")
        paced = publish_paced(env, instruments, rate, config.seconds, seed=5)
        _say_paced(say, paced)
        runs.append(paced)
    return capacity, runs[0], runs[1]


def _orders(env: BenchEnv, config: BenchConfig, say: Say) -> OrdersRun:
    """Phase 6: sessions of their own (contracts after the other phases'), a share trading."""
    used = max(config.sessions, config.big_sessions)
    instruments = instrument_names(used + config.order_sessions)[used:]
    say(
        f"orders: {config.order_sessions} sessions, {config.order_share:.0%} of them buying at"
        " market at the next wall-clock minute boundary (waits for it)"
    )
    run = run_orders(env, instruments, config.order_share)
    say(
        f"  {run.orders} orders filled {run.fills_s:.2f}s after the boundary; tick to accepted"
        f" p50 {percentile(run.accepted_us, 50) / 1000:.2f} ms,"
        f" p99 {percentile(run.accepted_us, 99) / 1000:.2f} ms"
    )
    parts = ", ".join(f"{name} {ms:.2f}" for name, ms in run.part_ms_per_order().items())
    say(f"  order cpu: {run.cpu_ms_per_order:.2f} ms per order and its fill ({parts})")
    return run


def _cpu_per_step_us(paced: Paced) -> float:
    return paced.cpu_per_step_us(paced.cpu.total_s) if paced.cpu is not None else 0.0


def _parts(cpu: CpuSpent) -> str:
    return ", ".join(f"{name} {seconds:.2f}s" for name, seconds in cpu.parts().items())


def _flat_out(
    env: BenchEnv, instruments: Sequence[str], chunks: Sequence[Chunk], say: Say
) -> tuple[FlatOut, int]:
    """Phase 1: the flat-out run, checked (every published tick consumed or rejected)."""
    ticks = sum(len(rows) for chunk in chunks for rows in chunk.values())
    flat = publish_flat_out(env, instruments, chunks, timeout_s=max(120.0, ticks / 2_000))
    done, rejected = processed_total(env, instruments)
    if done + rejected != flat.ticks:
        raise BadInput(f"sessions consumed {done + rejected} ticks of {flat.ticks} published")
    say(
        f"flat out: {flat.ticks:,} ticks in {flat.seconds:.2f}s = {flat.ticks_per_s:,.0f}/s "
        f"(publishing took {flat.publish_seconds:.2f}s)"
    )
    return flat, rejected


def _say_paced(say: Say, paced: Paced) -> None:
    say(
        f"  {paced.ticks:,} ticks at {paced.achieved_per_s:,.0f}/s in {paced.steps:,} steps: "
        f"p50 {paced.percentile_ms(50):.2f} ms, p99 {paced.percentile_ms(99):.2f} ms, "
        f"p99.9 {paced.percentile_ms(99.9):.2f} ms, max {paced.percentile_ms(100):.2f} ms, "
        f"{paced.closes:,} candle closes (publisher lag max {paced.max_publish_lag_ms:.1f} ms)"
    )
    if paced.cpu is not None:
        say(f"  cpu: {cpu_summary(paced)}")


def cpu_summary(paced: Paced) -> str:
    """Microseconds of CPU per step by part, and the cores they kept busy (of this machine's)."""
    cpu = paced.cpu
    if cpu is None:
        return "not measured"
    parts = ", ".join(
        f"{name} {paced.cpu_per_step_us(seconds):.0f}" for name, seconds in cpu.parts().items()
    )
    unknown = "" if cpu.known else " (worker processes not readable here)"
    return (
        f"{paced.cpu_per_step_us(cpu.total_s):.0f} us per step ({parts}); "
        f"{cpu.cores():.2f} of {os.cpu_count()} cores busy{unknown}"
    )
