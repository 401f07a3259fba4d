"""The synthetic random walk: deterministic for a seed, prices on the tick grid, times forward."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading.candles import fold_ticks, validate_tick
from trading.exceptions import BadInput
from workers.feeds.registry import create_feed
from workers.feeds.synthetic import SyntheticConfig, SyntheticSource
from workers.settings import Settings

ARGS = {
    "instruments": ["ESZ13", "GCZ13", "NQZ13"],
    "seed": 7,
    "start": "2013-10-07T13:30:00+00:00",
    "tick_size": "0.25",
    "start_price": "1676.50",
    "interval_ms": 100,
    "count": 3000,
}
SETTINGS = Settings()


def test_same_seed_same_ticks_other_seed_other_ticks() -> None:
    first = list(create_feed("synthetic", ARGS, SETTINGS).ticks())
    again = list(create_feed("synthetic", ARGS, SETTINGS).ticks())
    other = list(create_feed("synthetic", {**ARGS, "seed": 8}, SETTINGS).ticks())
    assert len(first) == 3000
    assert first == again
    assert first != other
    source = create_feed("synthetic", ARGS, SETTINGS)
    assert list(source.ticks()) == list(source.ticks())


def test_prices_on_the_tick_grid_and_ticks_valid() -> None:
    ticks = list(create_feed("synthetic", ARGS, SETTINGS).ticks())
    grid = Decimal("0.25")
    assert all(isinstance(t.price, Decimal) and t.price % grid == 0 for t in ticks)
    assert all(t.bid is not None and t.ask is not None for t in ticks)
    assert all(t.bid == t.price - grid and t.ask == t.price + grid for t in ticks)
    assert {t.instrument for t in ticks} == set(ARGS["instruments"])
    known = set(ARGS["instruments"])
    assert all(validate_tick(t, None, known) is None for t in ticks)
    moved = {t.price for t in ticks}
    assert len(moved) > 10


def test_each_instrument_walks_one_tick_at_a_time() -> None:
    ticks = list(create_feed("synthetic", ARGS, SETTINGS).ticks())
    for name in ARGS["instruments"]:
        prices = [Decimal("1676.50"), *(t.price for t in ticks if t.instrument == name)]
        assert all(abs(b - a) <= Decimal("0.25") for a, b in itertools.pairwise(prices))


def test_times_advance_in_aware_utc_from_start() -> None:
    ticks = list(create_feed("synthetic", ARGS, SETTINGS).ticks())
    start = datetime(2013, 10, 7, 13, 30, tzinfo=UTC)
    assert ticks[0].time == start
    assert ticks[-1].time == start + timedelta(milliseconds=100 * 2999)
    assert all(t.time.utcoffset() == timedelta(0) for t in ticks)
    assert all(a.time < b.time for a, b in itertools.pairwise(ticks))
    es = [t for t in ticks if t.instrument == "ESZ13"]
    result = fold_ticks(None, es, "1m")
    assert len(result.closed) == 4
    assert sum(c.volume for c in result.closed) + result.partial.volume == sum(t.size for t in es)


def test_price_never_reaches_zero() -> None:
    config = SyntheticConfig(
        instruments=("X",), seed=1, tick_size=Decimal("1"), start_price=Decimal("1"), count=2000
    )
    assert min(t.price for t in SyntheticSource(config).ticks()) >= 1


def test_unbounded_count_keeps_going() -> None:
    source = create_feed("synthetic", {"instruments": ["ESZ13"]}, SETTINGS)
    assert len(list(itertools.islice(source.ticks(), 5000))) == 5000
    assert source.speed is None


@pytest.mark.parametrize(
    "change",
    [
        {"instruments": []},
        {"instruments": ["A", "A"]},
        {"instruments": "ESZ13"},
        {"start_price": "1676.60"},
        {"tick_size": "0"},
        {"start": "2013-10-07T13:30:00"},
        {"interval_ms": 0},
        {"seed": "7"},
        {"count": -1},
        {"speed": "slow"},
        {"module": "os"},
    ],
)
def test_bad_args_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(BadInput):
        create_feed("synthetic", {**ARGS, **change}, SETTINGS)
