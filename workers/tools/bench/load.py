"""The benchmark's load: synthetic ticks, publishing them (flat out or paced), waiting for the
sessions to drain, and the same step work in one process without Redis or Celery."""

from __future__ import annotations

import gc
import json
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from models.codec import encode_state
from models.meta import CURSOR_FIELD
from trading.contracts import product_of
from trading.exceptions import ServiceUnavailable
from trading.market import Candle, StreamEntry
from workers.feeds.synthetic import SyntheticConfig, SyntheticSource
from workers.sessions.create import NewSession, build_initial_state
from workers.ticks.keys import stream_key
from workers.ticks.latency_probe import LATENCY_KEY
from workers.ticks.publisher import RawTick, encode_tick
from workers.ticks.step import SessionStep
from workers.tools.bench.cpu import WORKER_GROUPS, CpuReading, CpuSpent, read_cpu
from workers.tools.bench.env import STRATEGY, STRATEGY_ARGS, TIMEFRAME, BenchEnv

TICKS_PER_CANDLE = 100
"""Data-time spacing of the flat-out run: about this many ticks per session per 1m candle."""
CHUNK_TICKS = 20_000
"""The flat-out publisher sends this many ticks per round trip (split by instrument)."""
DRAIN_POLL_S = 0.005
PACE_INTERVAL_S = 0.0005
"""The paced publisher sends what is due at most this often (a feed handler's batching): each
tick keeps its due time, so the wait counts in the measured latency."""
SAMPLES_SETTLE_S = 0.05

Chunk = dict[str, list[RawTick]]


def synthetic_chunks(instruments: Sequence[str], count: int, seed: int = 1) -> list[Chunk]:
    """``count`` random-walk ticks over ``instruments`` in data-time order, grouped per chunk."""
    interval_ms = max(1, 60_000 // (TICKS_PER_CANDLE * len(instruments)))
    config = SyntheticConfig(
        instruments=tuple(instruments), seed=seed, interval_ms=interval_ms, count=count
    )
    chunks: list[Chunk] = []
    chunk: Chunk = {}
    size = 0
    for tick in SyntheticSource(config).ticks():
        chunk.setdefault(tick.instrument, []).append(encode_tick(tick))
        size += 1
        if size == CHUNK_TICKS:
            chunks.append(chunk)
            chunk, size = {}, 0
    if chunk:
        chunks.append(chunk)
    return chunks


def stream_ends(env: BenchEnv, instruments: Sequence[str]) -> list[bytes | None]:
    """The id of the last entry of each instrument's stream (None for an empty stream)."""
    with env.client.pipeline(transaction=False) as pipe:
        for instrument in instruments:
            pipe.xrevrange(stream_key(instrument), "+", "-", count=1)
        replies = pipe.execute()
    return [reply[0][0] if reply else None for reply in replies]


def wait_drained(env: BenchEnv, instruments: Sequence[str], timeout_s: float) -> float:
    """Poll until every session's cursor is at its stream's end; returns the monotonic time."""
    ends = stream_ends(env, instruments)
    pending = [(i, end) for i, end in zip(instruments, ends, strict=True) if end is not None]
    deadline = time.monotonic() + timeout_s
    while True:
        names = [name for name, _ in pending]
        cursors = env.cursors(names)
        pending = [
            (name, end)
            for (name, end), cursor in zip(pending, cursors, strict=True)
            if cursor != end
        ]
        now = time.monotonic()
        if not pending:
            return now
        if now > deadline:
            raise ServiceUnavailable(
                f"{len(pending)} sessions were not drained within {timeout_s:.0f}s "
                f"(first: {pending[0][0]}); see the worker logs"
            )
        time.sleep(DRAIN_POLL_S)


def processed_total(env: BenchEnv, instruments: Sequence[str]) -> tuple[int, int]:
    """Ticks processed and rejected so far, summed over the sessions' ``_progress``."""
    done = rejected = 0
    for raw in env.progress(instruments):
        if raw:
            data = json.loads(raw)
            done += int(data["ticks_processed"])
            rejected += sum(int(n) for n in data["rejected"].values())
    return done, rejected


def closed_total(env: BenchEnv, instruments: Sequence[str]) -> int:
    """Candles closed so far, summed over the sessions' ``_progress``."""
    return sum(int(json.loads(raw)["candles_closed"]) for raw in env.progress(instruments) if raw)


@dataclass(frozen=True, slots=True)
class FlatOut:
    ticks: int
    seconds: float
    publish_seconds: float

    @property
    def ticks_per_s(self) -> float:
        return self.ticks / self.seconds if self.seconds > 0 else 0.0


def publish_flat_out(
    env: BenchEnv, instruments: Sequence[str], chunks: Sequence[Chunk], timeout_s: float
) -> FlatOut:
    """Publish every chunk as fast as possible; time from the first publish to fully drained."""
    total = sum(len(rows) for chunk in chunks for rows in chunk.values())
    started = time.monotonic()
    for chunk in chunks:
        env.publisher.publish_many(chunk)
    published = time.monotonic()
    finished = wait_drained(env, instruments, timeout_s)
    return FlatOut(total, finished - started, published - started)


@dataclass(frozen=True, slots=True)
class Paced:
    offered_per_s: float
    achieved_per_s: float
    ticks: int
    steps: int
    max_publish_lag_ms: float
    latencies_us: list[int]
    closes: int = 0
    """Candles closed in the run, over all sessions: the steps that run the strategy (every
    session closes a 1m candle at each minute boundary, all at once)."""
    cpu: CpuSpent | None = None
    """Where the CPU went, from the first tick sent until every session was drained."""

    @classmethod
    def empty(cls) -> Paced:
        """A phase not run."""
        return cls(0.0, 0.0, 0, 0, 0.0, [])

    def cpu_per_step_us(self, seconds: float) -> float:
        """``seconds`` of CPU spread over the run's steps, in microseconds."""
        return seconds / self.steps * 1e6 if self.steps else 0.0

    def percentile_ms(self, p: float) -> float:
        return percentile(self.latencies_us, p) / 1000.0


def percentile(samples: Sequence[int], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100); 0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return float(ordered[rank - 1])


def paced_prices(instruments: Sequence[str], count: int, seed: int) -> list[tuple[str, RawTick]]:
    """Instrument and row of ``count`` random-walk ticks; the time field is set when sent."""
    config = SyntheticConfig(instruments=tuple(instruments), seed=seed, count=count)
    return [(tick.instrument, encode_tick(tick)) for tick in SyntheticSource(config).ticks()]


def publish_paced(
    env: BenchEnv,
    instruments: Sequence[str],
    rate: float,
    seconds: float,
    seed: int = 2,
    on_second: Callable[[int], None] | None = None,
) -> Paced:
    """Offer ``rate`` ticks/s for ``seconds``, each stamped with its due wall time (so its age
    at decision time is the tick-to-decision latency), and collect the drainers' samples."""
    count = max(1, int(rate * seconds))
    prices = paced_prices(instruments, count, seed)
    gc.freeze()  # the prepared ticks would make each full collection pause the feed ~50 ms
    _settle(env, instruments, prices)
    closed_before = closed_total(env, instruments)
    cpu_before = cpu_now(env)
    start = time.time() + 0.05
    sent = 0
    worst_lag = 0.0
    next_report = 1
    while sent < count:
        now = time.time()
        due = min(count, int((now - start) * rate) + 1)
        if due <= sent:
            time.sleep(max(0.0, start + sent / rate - now))
            continue
        batch: Chunk = {}
        for k in range(sent, due):
            instrument, row = prices[k]
            t_ms = str(int((start + k / rate) * 1000))
            batch.setdefault(instrument, []).append((t_ms, row[1], row[2], row[3], row[4]))
        worst_lag = max(worst_lag, now - (start + sent / rate))
        env.publisher.publish_many(batch)
        sent = due
        time.sleep(PACE_INTERVAL_S)
        if on_second is not None and now - start >= next_report:
            on_second(next_report)
            next_report += 1
    elapsed = time.time() - start
    gc.unfreeze()
    wait_drained(env, instruments, timeout_s=60.0 + seconds)
    cpu = CpuSpent.between(cpu_before, cpu_now(env))
    samples = final_samples(env)
    return Paced(
        offered_per_s=rate,
        achieved_per_s=count / elapsed if elapsed > 0 else 0.0,
        ticks=count,
        steps=len(samples),
        max_publish_lag_ms=worst_lag * 1000.0,
        latencies_us=samples,
        closes=closed_total(env, instruments) - closed_before,
        cpu=cpu,
    )


def cpu_now(env: BenchEnv) -> CpuReading:
    """The CPU every part of the fleet has used so far (``workers.tools.bench.cpu``)."""
    leaders = {
        name: proc.pid for name, proc in env.children.children.items() if name in WORKER_GROUPS
    }
    return read_cpu(env.client, leaders)


def _settle(
    env: BenchEnv, instruments: Sequence[str], prices: Sequence[tuple[str, RawTick]]
) -> None:
    """One tick per session at the current time, drained before measuring: it closes the
    candle left open by the data of an earlier run (a one-off strategy call, maybe an order)."""
    now_ms = str(int(time.time() * 1000))
    first: dict[str, RawTick] = {}
    for instrument, row in prices:
        first.setdefault(instrument, row)
    batch = {i: [(now_ms, *first.get(i, prices[0][1])[1:])] for i in instruments}
    env.publisher.publish_many(batch)
    wait_drained(env, instruments, timeout_s=60.0)
    final_samples(env)


def final_samples(env: BenchEnv) -> list[int]:
    """The probe's samples once the drainers have sent their last ones (they send them with
    their next claim, a millisecond or so after the last step)."""
    length = -1
    while True:
        time.sleep(SAMPLES_SETTLE_S)
        now = int(env.client.llen(LATENCY_KEY))  # type: ignore[arg-type]
        if now == length:
            return env.take_latencies_us()
        length = now


@dataclass(frozen=True, slots=True)
class Baseline:
    ticks: int
    seconds: float
    orders: int

    @property
    def ticks_per_s(self) -> float:
        return self.ticks / self.seconds if self.seconds > 0 else 0.0


def _entries(rows: Sequence[RawTick], first_seq: int) -> list[StreamEntry]:
    """Rows as the drainer sees them: (id, {b"t": ..., ...}); bid/ask left out when empty."""
    out: list[StreamEntry] = []
    for seq, (t, p, s, b, a) in enumerate(rows, start=first_seq):
        values = {b"t": t.encode(), b"p": p.encode(), b"s": s.encode()}
        if b or a:
            values[b"b"] = b.encode()
            values[b"a"] = a.encode()
        out.append((f"{t}-{seq}".encode(), values))
    return out


def _initial_fields(instrument: str) -> dict[str, str]:
    request = NewSession(
        name=f"baseline-{instrument}",
        account=f"baseline-{instrument}",
        product=product_of(instrument),
        contract=instrument,
        strategy=STRATEGY,
        strategy_args=dict(STRATEGY_ARGS),
        timeframe=TIMEFRAME,
        feed="synthetic",
    )
    state = build_initial_state(request, str(uuid.uuid4()), datetime.now(UTC))
    fields = dict(encode_state(state).hash)
    fields[CURSOR_FIELD] = "0-0"
    return fields


def run_baseline(instruments: Sequence[str], chunks: Sequence[Chunk]) -> Baseline:
    """The drainer's step work (parse, validate, fold, strategy, decide) over the same ticks in
    one process: one ``SessionStep`` per session per chunk, state carried in memory."""
    fields = {instrument: _initial_fields(instrument) for instrument in instruments}
    histories: dict[str, list[Candle]] = {instrument: [] for instrument in instruments}
    ticks = orders = 0
    spent = 0.0
    seq = 0
    for chunk in chunks:
        work = []
        for instrument, rows in chunk.items():
            work.append((instrument, _entries(rows, seq)))
            seq += len(rows)
        started = time.perf_counter()
        for instrument, entries in work:
            done, decided = _baseline_step(instrument, entries, fields[instrument], histories)
            ticks += done
            orders += decided
        spent += time.perf_counter() - started
    return Baseline(ticks, spent, orders)


def _baseline_step(
    instrument: str,
    entries: Sequence[StreamEntry],
    fields: dict[str, str],
    histories: Mapping[str, list[Candle]],
) -> tuple[int, int]:
    history = histories[instrument]

    def read(count: int) -> list[Candle]:
        return history[-count:]

    step = SessionStep(f"baseline-{instrument}", fields, read).run(entries)
    fields.update(step.fields)
    if step.cursor is not None:
        fields[CURSOR_FIELD] = step.cursor
    history.extend(step.candles)
    return step.ticks_processed, len(step.new_orders)


@dataclass(frozen=True, slots=True)
class Capacity:
    """Steps of one tick each, flat out: the fleet's capacity in steps per second."""

    steps: int
    seconds: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0


def measure_capacity(
    env: BenchEnv, instruments: Sequence[str], rounds: int, seed: int = 4
) -> Capacity:
    """``rounds`` rounds of one tick for every session, each published as soon as the one
    before is drained: every step holds one tick (a paced run's step), none waits on the
    feed; steps per second from the first publish until the last round is drained."""
    prices = paced_prices(instruments, rounds * len(instruments), seed)
    _settle(env, instruments, prices)
    by_instrument: dict[str, list[RawTick]] = {}
    for instrument, row in prices:
        by_instrument.setdefault(instrument, []).append(row)
    fallback = prices[0][1]
    started = time.monotonic()
    for n in range(rounds):
        t_ms = str(int(time.time() * 1000))
        batch: Chunk = {}
        for instrument in instruments:
            rows = by_instrument.get(instrument) or [fallback]
            row = rows[n % len(rows)]
            batch[instrument] = [(t_ms, row[1], row[2], row[3], row[4])]
        env.publisher.publish_many(batch)
        wait_drained(env, instruments, timeout_s=60.0)
    seconds = time.monotonic() - started
    final_samples(env)
    return Capacity(rounds * len(instruments), seconds)


def measure_idle(env: BenchEnv, seconds: float) -> CpuSpent:
    """The CPU every part of the fleet uses over ``seconds`` with no ticks at all (the drain
    tasks of the run before included, from the moment their last session was drained)."""
    before = cpu_now(env)
    time.sleep(seconds)  # idling is what is measured
    return CpuSpent.between(before, cpu_now(env))
