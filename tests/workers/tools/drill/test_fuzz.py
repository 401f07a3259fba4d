"""The fuzzed feed's plan, without Redis: the same seed gives the same plan, the real entries
keep their order, every category is there, and the expected counts are what was injected."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trading.candles import validate_tick
from trading.market import EPOCH, Tick, entry_to_tick
from workers.ticks.publisher import RawTick, encode_tick
from workers.tools.drill.fuzz import UNKNOWN, FuzzPlan, fuzz_feed

T0 = datetime(2013, 10, 7, 13, 30, tzinfo=UTC)


def replay(instrument: str, n: int, price: str) -> list[RawTick]:
    return [
        encode_tick(Tick(instrument, T0 + timedelta(seconds=15 * k), Decimal(price), 2))
        for k in range(n)
    ]


TICKS = {"ESZ13": replay("ESZ13", 600, "1676.25"), "GCZ13": replay("GCZ13", 300, "1320.1")}


def simulate(plan: FuzzPlan) -> tuple[dict[str, list[RawTick]], Counter[str]]:
    """What the streams hold after publishing ``plan`` (numbering as the PUBLISH script
    keeps it), and the reasons each reader rejects (the step's rule)."""
    streams: dict[str, list[RawTick]] = {}
    next_seq: dict[str, int] = {}
    rejected: Counter[str] = Counter()
    for instrument, batch in plan.batches:
        skip = max(0, next_seq.get(instrument, 0) - batch.at.first)
        next_seq[instrument] = max(next_seq.get(instrument, 0), batch.at.first + len(batch.rows))
        streams.setdefault(instrument, []).extend(batch.rows[skip:])
        rejected["duplicate"] += min(skip, len(batch.rows))
    for instrument, rows in streams.items():
        if instrument == UNKNOWN:
            rejected["unknown_instrument"] += len(rows)
            continue
        last = None
        for row in rows:
            values = {k.encode(): v.encode() for k, v in zip("tpsba", row, strict=True) if v}
            tick = entry_to_tick(instrument, values)
            reason = "unparseable" if tick is None else validate_tick(tick, last)
            if reason is None:
                assert tick is not None
                last = tick.time
            else:
                rejected[reason] += 1
    return streams, rejected


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert fuzz_feed(TICKS, 7) == fuzz_feed(TICKS, 7)
    assert fuzz_feed(TICKS, 7).batches != fuzz_feed(TICKS, 8).batches


def test_the_real_entries_arrive_in_order_and_every_bad_one_is_counted_by_its_reason() -> None:
    for seed in range(5):
        plan = fuzz_feed(TICKS, seed, batch=50)
        streams, rejected = simulate(plan)
        for instrument, real in TICKS.items():
            kept = [row for row in streams[instrument] if row in set(real)]
            assert kept == real, (seed, instrument)
        expected = Counter(plan.at_publish)
        for reasons in plan.per_reader.values():
            expected.update(reasons)
        assert +rejected == +expected, seed
        assert plan.faults == sum(expected.values())


def test_every_category_is_injected_on_every_instrument() -> None:
    plan = fuzz_feed(TICKS, 3)
    for instrument in TICKS:
        reasons = plan.per_reader[instrument]
        assert set(reasons) == {"unparseable", "bad_price", "bad_size", "time_backwards"}
        assert min(reasons.values()) >= 1, (instrument, reasons)
    assert plan.at_publish["duplicate"] > 0
    assert plan.at_publish["unknown_instrument"] > 0
    shapes = {row[2] for _, b in plan.batches for row in b.rows}
    assert {"-1", "-250", str(10**12), str(10**9 + 1)} & shapes, "huge or negative sizes"
    prices = {row[1] for _, b in plan.batches for row in b.rows}
    assert {"NaN", "Infinity", "-Infinity", "sNaN", "0"} & prices
    assert {i for i, _ in plan.batches} == {"ESZ13", "GCZ13", UNKNOWN}


def test_a_backwards_time_is_earlier_than_the_tick_before_it() -> None:
    plan = fuzz_feed({"ESZ13": TICKS["ESZ13"]}, 11)
    streams, _ = simulate(plan)
    times = [int(t) for t, *_ in streams["ESZ13"] if t.isdigit()]
    backwards = sum(1 for a, b in itertools.pairwise(times) if b < a)
    assert backwards >= plan.per_reader["ESZ13"]["time_backwards"] >= 1
    assert all(EPOCH + timedelta(milliseconds=t) >= T0 - timedelta(minutes=3) for t in times)


def test_the_metric_totals_count_each_reader() -> None:
    plan = fuzz_feed(TICKS, 5)
    total = plan.rejected_total({"ESZ13": 3, "GCZ13": 1})
    es, gc = plan.per_reader["ESZ13"], plan.per_reader["GCZ13"]
    assert total["bad_size"] == 3 * es["bad_size"] + gc["bad_size"]
    assert total["duplicate"] == plan.at_publish["duplicate"]
    assert plan.rejected_total({})["unknown_instrument"] == plan.at_publish["unknown_instrument"]
    assert "bad_price" not in plan.rejected_total({})
