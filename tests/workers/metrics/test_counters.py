"""Counters kept in a real Redis: processes adding at once lose nothing, label values outside
their fixed set are refused, the tick tally's histogram is the one counted tick by tick, and
what is kept reads back as Prometheus families."""

from __future__ import annotations

import multiprocessing
import random

import pytest
import redis
from prometheus_client.core import Metric as Family

from workers.metrics.catalog import (
    CANDLES_CLOSED,
    FILLS,
    ORDERS,
    RECONCILE_LAST_SUCCESS,
    ROLLS,
    TICK_LAG,
    TICKS_PROCESSED,
    TICKS_REJECTED,
)
from workers.metrics.counters import ADD, count, count_each, read_all, send, set_gauge
from workers.metrics.exposition import families
from workers.metrics.ticks import TickTally, stream_times
from workers.ticks.pipelines import Batch

pytestmark = pytest.mark.integration

PROCESSES = 4
ROUNDS = 300


def _add_from_a_process(url: str, seed: int) -> None:
    """One process's share: single counts, pipelined counts and tallies sent as one command."""
    client = redis.Redis.from_url(url)
    add = client.register_script(ADD)
    tally = TickTally()
    for i in range(ROUNDS):
        count(client, FILLS)
        with client.pipeline(transaction=False) as pipe:
            count(pipe, ORDERS, "filled", n=2)
            pipe.execute()
        tally.step(3, {"bad_price": 1}, 1, [1_000 + i], 1_000 + i + seed)
        batch = Batch(client)
        batch.commands += tally.commands(add.sha)
        for reply in batch.execute([add]):
            assert not isinstance(reply, Exception), reply
    client.close()


def _family(found: list[Family], name: str) -> Family:
    (family,) = [f for f in found if f.name == name]
    return family


def _value(family: Family, suffix: str = "", **labels: str) -> float:
    for sample in family.samples:
        if sample.name == family.name + suffix and sample.labels == labels:
            return float(sample.value)
    raise AssertionError(f"no sample {family.name}{suffix} {labels}")


def test_processes_adding_at_once_lose_nothing(redis_url: str, redis_client: redis.Redis) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_add_from_a_process, args=(redis_url, seed))
        for seed in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    found = list(families(read_all(redis_client)))
    total = PROCESSES * ROUNDS
    assert _value(_family(found, "tradefleet_fills"), "_total") == total
    assert _value(_family(found, "tradefleet_orders"), "_total", outcome="filled") == 2 * total
    assert _value(_family(found, "tradefleet_orders"), "_total", outcome="lost") == 0
    assert _value(_family(found, "tradefleet_ticks_processed"), "_total") == 3 * total
    assert _value(_family(found, "tradefleet_candles_closed"), "_total") == total
    rejected = _family(found, "tradefleet_ticks_rejected")
    assert _value(rejected, "_total", reason="bad_price") == total
    assert _value(rejected, "_total", reason="time_backwards") == 0
    lag = _family(found, "tradefleet_tick_lag_seconds")
    assert _value(lag, "_count") == total
    # Process ``seed`` saw every tick ``seed`` ms old: 0, 1, 2, 3 ms, all within 5 ms.
    assert _value(lag, "_sum") == pytest.approx(ROUNDS * sum(range(PROCESSES)) / 1000)
    assert _value(lag, "_bucket", le="0.005") == total
    assert _value(lag, "_bucket", le="+Inf") == total


def test_label_values_outside_their_set_are_refused(redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="outcome"):
        count(redis_client, ORDERS, "ORD-123")
    with pytest.raises(ValueError, match="labels"):
        count(redis_client, FILLS, "extra")
    with pytest.raises(ValueError, match="not a counter"):
        count(redis_client, RECONCILE_LAST_SUCCESS, "orders")
    with pytest.raises(ValueError, match="result"):
        count(redis_client, ROLLS, "maybe")
    assert read_all(redis_client)["tradefleet_orders"] == {}


def test_several_counts_go_in_one_round_trip_and_bad_labels_write_none(
    redis_client: redis.Redis,
) -> None:
    redis_client.config_resetstat()
    count_each(redis_client, [(FILLS, ()), (ORDERS, ("filled",)), (ORDERS, ("filled",))])
    counted = read_all(redis_client)
    assert (counted["tradefleet_fills"], counted["tradefleet_orders"]) == (
        {"": "1"},
        {"filled": "2"},
    )
    assert redis_client.info("commandstats")["cmdstat_hincrby"]["calls"] == 2
    with pytest.raises(ValueError, match="outcome"):
        count_each(redis_client, [(FILLS, ()), (ORDERS, ("ORD-123",))])
    assert read_all(redis_client)["tradefleet_fills"] == {"": "1"}, "nothing of a bad batch"


def test_a_write_to_a_redis_that_does_not_answer_is_dropped_not_raised() -> None:
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    count(gone, FILLS)
    count_each(gone, [(FILLS, ())])
    set_gauge(gone, RECONCILE_LAST_SUCCESS, 1.0, "positions")
    send(gone, {FILLS.key: {"": 1}})


def _lag_by_brute_force(times: list[int], now: int) -> tuple[list[int], int]:
    """Cumulative counts per bucket bound and the sum, one tick at a time (ms)."""
    ages = [max(0, now - t) for t in times]
    bounds = TICK_LAG.scaled_buckets
    return [sum(1 for age in ages if age <= bound) for bound in bounds], sum(ages)


@pytest.mark.parametrize("size", [1, 3, 4, 5, 40, 2_000])
def test_the_tally_histogram_is_the_one_counted_tick_by_tick(
    redis_client: redis.Redis, size: int
) -> None:
    rng = random.Random(size)
    now = 1_700_000_000_000
    times = sorted(
        now - rng.choice([-50, 0, 3, 60, 700, 4_000, 90_000, 400_000]) for _ in range(size)
    )
    entries = [(f"{t}-{i}".encode(), {}) for i, t in enumerate(times)]
    assert stream_times(entries) == times
    assert stream_times([(f"{t}-0", {}) for t in times]) == times
    tally = TickTally()
    half = size // 2
    tally.step(half, {}, 0, times[:half], now)
    tally.step(size - half, {}, 0, times[half:], now)
    send(redis_client, tally.take())
    assert not tally
    lag = _family(list(families(read_all(redis_client))), "tradefleet_tick_lag_seconds")
    cumulative, total = _lag_by_brute_force(times, now)
    for bound, expected in zip(TICK_LAG.buckets, cumulative, strict=True):
        assert _value(lag, "_bucket", le=repr(float(bound))) == expected, bound
    assert _value(lag, "_bucket", le="+Inf") == size
    assert _value(lag, "_count") == size
    assert _value(lag, "_sum") == pytest.approx(total / 1000)


def test_unset_counters_read_as_zero_and_gauges_only_when_set(redis_client: redis.Redis) -> None:
    found = list(families(read_all(redis_client)))
    assert _value(_family(found, "tradefleet_ticks_processed"), "_total") == 0
    rolls = _family(found, "tradefleet_rolls")
    assert {s.labels["result"] for s in rolls.samples if s.name.endswith("_total")} == {
        "done",
        "failed",
        "needs_operator",
        "aborted",
    }
    assert _family(found, "tradefleet_reconcile_last_success_timestamp_seconds").samples == []
    set_gauge(redis_client, RECONCILE_LAST_SUCCESS, 1_700_000_000.5, "orders")
    count(redis_client, CANDLES_CLOSED, n=7)
    count(redis_client, TICKS_REJECTED, "unparseable")
    count(redis_client, TICKS_PROCESSED, n=0)
    found = list(families(read_all(redis_client)))
    last = _family(found, "tradefleet_reconcile_last_success_timestamp_seconds")
    assert [(s.labels, s.value) for s in last.samples] == [({"check": "orders"}, 1_700_000_000.5)]
    assert _value(_family(found, "tradefleet_candles_closed"), "_total") == 7
    assert _value(_family(found, "tradefleet_ticks_rejected"), "_total", reason="unparseable") == 1
    assert redis_client.hgetall(TICKS_PROCESSED.key) == {}
