"""Candles from ticks: timeframes, boundaries, gaps, batching, and bad-tick reasons."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.candles import (
    MAX_TICK_SIZE,
    REJECT_REASONS,
    FoldResult,
    fold_ticks,
    parse_tick_fields,
    tick_fields,
    validate_tick,
)
from trading.exceptions import BadInput, BadTick
from trading.market import Candle, Tick
from trading.timeframes import Timeframe, parse_timeframe

T0 = datetime(2013, 10, 7, 13, 30, tzinfo=UTC)


def tick(seconds: float, price: str, size: int = 1, instrument: str = "ESZ13") -> Tick:
    return Tick(instrument, T0 + timedelta(seconds=seconds), Decimal(price), size)


def candle(minute: int, o: str, h: str, lo: str, c: str, v: int) -> Candle:
    return Candle(
        T0 + timedelta(minutes=minute), Decimal(o), Decimal(h), Decimal(lo), Decimal(c), v
    )


def all_candles(result: FoldResult) -> list[Candle]:
    return [*result.closed, *([result.partial] if result.partial else [])]


# --- timeframes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60), ("5m", 300), ("15m", 900), ("1h", 3600), ("1d", 86400), ("30s", 30)],
)
def test_parse_timeframe(text: str, seconds: int) -> None:
    tf = parse_timeframe(text)
    assert tf.seconds == seconds
    assert str(tf) == text


def test_equal_timeframes_compare_equal_whatever_the_spelling() -> None:
    assert parse_timeframe("60m") == parse_timeframe("1h")
    assert parse_timeframe("60m").name == "1h"
    assert parse_timeframe("120s").name == "2m"
    assert parse_timeframe(" 5M ").name == "5m"


@pytest.mark.parametrize("text", ["", "0m", "7m", "2d", "1w", "m5", "-1m", "1.5m", "abc"])
def test_bad_timeframe_is_refused(text: str) -> None:
    with pytest.raises(BadInput):
        parse_timeframe(text)


def test_bucket_start_aligns_to_utc_epoch_multiples() -> None:
    five = parse_timeframe("5m")
    t = datetime(2013, 10, 7, 13, 34, 59, 999_999, tzinfo=UTC)
    assert five.bucket_start(t) == datetime(2013, 10, 7, 13, 30, tzinfo=UTC)
    boundary = datetime(2013, 10, 7, 13, 35, tzinfo=UTC)
    assert five.bucket_start(boundary) == boundary
    day = parse_timeframe("1d")
    assert day.bucket_start(t) == datetime(2013, 10, 7, tzinfo=UTC)


def test_bucket_start_converts_other_offsets_to_utc() -> None:
    eastern = timezone(timedelta(hours=-4))
    t = datetime(2013, 10, 7, 9, 31, 10, tzinfo=eastern)
    start = parse_timeframe("1h").bucket_start(t)
    assert start == datetime(2013, 10, 7, 13, 0, tzinfo=UTC)
    assert start.utcoffset() == timedelta(0)


def test_bucket_start_refuses_naive_times() -> None:
    with pytest.raises(BadInput):
        parse_timeframe("1m").bucket_start(datetime(2013, 10, 7, 13, 30))


# --- folding ----------------------------------------------------------------------------------


def test_candle_closes_when_a_tick_arrives_in_a_later_minute() -> None:
    ticks = [tick(1, "100"), tick(20, "102", 2), tick(40, "99", 3), tick(59.999, "101", 4)]
    ticks.append(tick(61, "103", 5))
    result = fold_ticks(None, ticks, "1m")
    assert result.closed == (candle(0, "100", "102", "99", "101", 10),)
    assert result.partial == candle(1, "103", "103", "103", "103", 5)
    assert result.last_time == T0 + timedelta(seconds=61)


def test_tick_exactly_on_the_boundary_opens_the_new_candle() -> None:
    result = fold_ticks(None, [tick(0, "100"), tick(30, "101"), tick(60, "105", 7)], "1m")
    assert result.closed == (candle(0, "100", "101", "100", "101", 2),)
    assert result.partial == candle(1, "105", "105", "105", "105", 7)


def test_gaps_invent_no_empty_candles() -> None:
    ticks = [tick(5, "100"), tick(3 * 60 + 5, "101"), tick(10 * 60, "99")]
    result = fold_ticks(None, ticks, "1m")
    assert [c.start for c in result.closed] == [T0, T0 + timedelta(minutes=3)]
    assert result.partial is not None
    assert result.partial.start == T0 + timedelta(minutes=10)


def test_partial_is_carried_across_calls() -> None:
    first = fold_ticks(None, [tick(1, "100", 1), tick(2, "104", 1)], "1m")
    assert first.closed == ()
    second = fold_ticks(
        first.partial, [tick(3, "98", 2), tick(65, "97", 1)], "1m", last_time=first.last_time
    )
    assert second.closed == (candle(0, "100", "104", "98", "98", 4),)
    assert second.partial == candle(1, "97", "97", "97", "97", 1)


def test_empty_batch_keeps_partial_and_last_time() -> None:
    partial = candle(0, "1", "2", "1", "2", 3)
    result = fold_ticks(partial, [], parse_timeframe("1m"), last_time=T0)
    assert result == FoldResult(closed=(), partial=partial, last_time=T0)
    assert fold_ticks(None, [], "1m") == FoldResult((), None, None)


def test_five_minute_candles() -> None:
    ticks = [tick(m * 60, str(100 + m)) for m in range(12)]
    result = fold_ticks(None, ticks, "5m")
    assert [(c.start, c.open, c.close, c.volume) for c in result.closed] == [
        (T0, Decimal("100"), Decimal("104"), 5),
        (T0 + timedelta(minutes=5), Decimal("105"), Decimal("109"), 5),
    ]
    assert result.partial == candle(10, "110", "111", "110", "111", 2)


def test_fold_refuses_ticks_going_back_in_time() -> None:
    first = fold_ticks(None, [tick(30, "100")], "1m")
    with pytest.raises(BadTick) as err:
        fold_ticks(first.partial, [tick(10, "100")], "1m", last_time=first.last_time)
    assert err.value.reason == "time_backwards"
    with pytest.raises(BadTick):
        fold_ticks(candle(1, "1", "1", "1", "1", 1), [tick(10, "100")], "1m")


def reference_candles(ticks: list[Tick], tf: Timeframe) -> list[Candle]:
    """Naive grouping by bucket: the obviously-correct model the fold is checked against."""
    groups: dict[datetime, list[Tick]] = {}
    for t in ticks:
        groups.setdefault(tf.bucket_start(t.time), []).append(t)
    return [
        Candle(
            start,
            group[0].price,
            max(t.price for t in group),
            min(t.price for t in group),
            group[-1].price,
            sum(t.size for t in group),
        )
        for start, group in sorted(groups.items())
    ]


def _ticks_from_rows(rows: list[tuple[int, int, int]]) -> list[Tick]:
    times = itertools.accumulate(ms for ms, _, _ in rows)
    return [
        Tick("ESZ13", T0 + timedelta(milliseconds=ms), Decimal(quarters) / 4, size)
        for ms, (_, quarters, size) in zip(times, rows, strict=True)
    ]


tick_lists = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=90_000),  # ms after the previous tick (0: same ms)
        st.integers(min_value=1, max_value=400),  # price in quarter points
        st.integers(min_value=0, max_value=50),  # size
    ),
    max_size=60,
).map(_ticks_from_rows)


@settings(max_examples=200, deadline=None)
@given(
    ticks=tick_lists,
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=6),
    timeframe=st.sampled_from(["1m", "5m", "1h"]),
)
def test_folding_in_batches_equals_one_batch_and_the_reference(
    ticks: list[Tick], cuts: list[int], timeframe: str
) -> None:
    tf = parse_timeframe(timeframe)
    whole = fold_ticks(None, ticks, tf)
    bounds = [0, *sorted(min(c, len(ticks)) for c in cuts), len(ticks)]
    closed: list[Candle] = []
    partial: Candle | None = None
    last: datetime | None = None
    for lo, hi in itertools.pairwise(bounds):
        step = fold_ticks(partial, ticks[lo:hi], tf, last_time=last)
        closed.extend(step.closed)
        partial, last = step.partial, step.last_time
    assert tuple(closed) == whole.closed
    assert partial == whole.partial
    assert last == whole.last_time
    assert all_candles(whole) == reference_candles(ticks, tf)


# --- validation and parsing -------------------------------------------------------------------


@pytest.mark.parametrize("price", ["NaN", "sNaN", "Infinity", "-Infinity", "0", "-0.25"])
def test_bad_price(price: str) -> None:
    assert validate_tick(tick(1, price), None) == "bad_price"


def test_bad_size_and_zero_size() -> None:
    assert validate_tick(tick(1, "100", size=-1), None) == "bad_size"
    assert validate_tick(tick(1, "100", size=0), None) is None


def test_time_backwards_but_equal_time_is_fine() -> None:
    last = T0 + timedelta(seconds=10)
    assert validate_tick(tick(9.999, "100"), last) == "time_backwards"
    assert validate_tick(tick(10, "100"), last) is None
    assert validate_tick(tick(11, "100"), last) is None


def test_an_implausibly_huge_size_is_a_bad_size() -> None:
    """A print of 10**12 lots is a feed fault: folded, it would swell the candle's volume."""
    assert validate_tick(tick(1, "100", size=MAX_TICK_SIZE), None) is None
    assert validate_tick(tick(1, "100", size=MAX_TICK_SIZE + 1), None) == "bad_size"
    assert validate_tick(tick(1, "100", size=10**12), None) == "bad_size"


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-1", "0"])
def test_a_bad_bid_or_ask_is_a_bad_price(bad: str) -> None:
    """The paper broker fills a market order at the bid or ask: a tick whose quote is not a
    price is rejected whole, as the broker skips it."""
    good = tick(1, "100")
    assert validate_tick(replace(good, bid=Decimal("99.75"), ask=Decimal("100.25")), None) is None
    assert validate_tick(replace(good, bid=Decimal(bad)), None) == "bad_price"
    assert validate_tick(replace(good, ask=Decimal(bad)), None) == "bad_price"


def test_unknown_instrument() -> None:
    assert validate_tick(tick(1, "100", instrument="NQZ13"), None, {"ESZ13"}) == (
        "unknown_instrument"
    )
    assert validate_tick(tick(1, "100"), None, {"ESZ13"}) is None
    assert validate_tick(tick(1, "100", instrument="NQZ13"), None) is None


def test_naive_time_is_unparseable() -> None:
    naive = Tick("ESZ13", datetime(2013, 10, 7, 13, 30), Decimal("100"), 1)
    assert validate_tick(naive, T0) == "unparseable"


def test_every_reason_is_listed() -> None:
    assert set(REJECT_REASONS) == {
        "bad_price",
        "bad_size",
        "duplicate",
        "time_backwards",
        "unknown_instrument",
        "unparseable",
    }


def test_fields_round_trip_with_str_and_bytes() -> None:
    original = Tick("ESZ13", T0, Decimal("1676.50"), 3, Decimal("1676.25"), Decimal("1676.75"))
    fields = tick_fields(original)
    assert fields["price"] == "1676.50"
    assert parse_tick_fields(fields) == original
    as_bytes = {k.encode(): v.encode() for k, v in fields.items()}
    assert parse_tick_fields(as_bytes) == original
    no_touch = Tick("GCZ13", T0, Decimal("1313.7"), 1)
    assert parse_tick_fields(tick_fields(no_touch)) == no_touch


def test_parse_converts_offsets_to_utc() -> None:
    row = {"instrument": "ESZ13", "time": "2013-10-07T09:30:00-04:00", "price": "1", "size": "1"}
    parsed = parse_tick_fields(row)
    assert parsed.time == T0
    assert parsed.time.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "change",
    [
        {"price": "abc"},
        {"price": None},
        {"size": "1.5"},
        {"size": ""},
        {"time": "yesterday"},
        {"time": "2013-10-07T13:30:00"},
        {"instrument": ""},
        {"bid": "x"},
    ],
)
def test_unparseable_rows(change: dict[str, str | None]) -> None:
    row: dict[str, str] = tick_fields(tick(1, "100"))
    for key, value in change.items():
        if value is None:
            del row[key]
        else:
            row[key] = value
    with pytest.raises(BadTick) as err:
        parse_tick_fields(row)
    assert err.value.reason == "unparseable"


def test_parsed_nan_is_left_to_the_validator() -> None:
    parsed = parse_tick_fields(
        {"instrument": "ESZ13", "time": T0.isoformat(), "price": "NaN", "size": "1"}
    )
    assert validate_tick(parsed, None) == "bad_price"
