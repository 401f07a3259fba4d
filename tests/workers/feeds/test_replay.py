"""Replay of the REAL Lean files: 1-minute candles folded from the replay ticks reproduce every
source bar exactly; tick files pass through row for row; pacing against a fake clock."""

from __future__ import annotations

import csv
import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from trading.candles import fold_ticks, validate_tick
from trading.exceptions import BadInput, UnknownRegisteredName
from trading.market import Candle, Tick
from workers.feeds.base import Pacer, paced, parse_speed
from workers.feeds.lean import contract_month, contract_symbol
from workers.feeds.registry import create_feed, feed_names, get_feed_factory
from workers.feeds.replay import ReplayConfig, ReplaySource, split_volume
from workers.settings import DEFAULT_MARKET_DATA_DIR, PathSettings, Settings

DATA = DEFAULT_MARKET_DATA_DIR
SETTINGS = Settings(paths=PathSettings(market_data_dir=DATA))
ES = DATA / "es" / "minute"
GC = DATA / "gc" / "tick"


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return [row for row in csv.reader(handle) if row]


def file_bars(day: str, month: str) -> list[Candle]:
    """The trade file parsed here, independently of workers.feeds.lean."""
    origin = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
    return [
        Candle(
            origin + timedelta(milliseconds=int(ms)),
            Decimal(o),
            Decimal(h),
            Decimal(lo),
            Decimal(c),
            int(v),
        )
        for ms, o, h, lo, c, v in csv_rows(ES / f"{day}_es_minute_trade_{month}.csv")
    ]


def file_touch(day: str, month: str) -> dict[datetime, tuple[Decimal | None, Decimal | None]]:
    origin = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
    return {
        origin + timedelta(milliseconds=int(row[0])): (
            Decimal(row[4]) if row[4] else None,
            Decimal(row[9]) if row[9] else None,
        )
        for row in csv_rows(ES / f"{day}_es_minute_quote_{month}.csv")
    }


def replay(contract: str, first: str, last: str | None = None, **kw: object) -> ReplaySource:
    args: dict[str, object] = {"product": contract[:2], "contract": contract, "date_from": first}
    if last is not None:
        args["date_to"] = last
    args.update(kw)
    source = create_feed("replay", args, SETTINGS)
    assert isinstance(source, ReplaySource)
    return source


def one_minute_candles(ticks: list[Tick]) -> list[Candle]:
    result = fold_ticks(None, ticks, "1m")
    assert result.partial is not None
    return [*result.closed, result.partial]


@pytest.mark.parametrize(
    ("contract", "day"),
    [("ESZ13", "2013-10-07"), ("ESZ13", "2013-12-20"), ("ESH14", "2013-12-18")],
)
def test_minute_replay_reproduces_every_source_bar_exactly(contract: str, day: str) -> None:
    ymd, month = day.replace("-", ""), contract_month(contract)
    ticks = list(replay(contract, day).ticks())
    expected = file_bars(ymd, month)
    assert len(expected) > 500

    candles = one_minute_candles(ticks)
    assert candles == expected
    for got, want in zip(candles, expected, strict=True):  # Decimal text kept as in the file
        assert (str(got.open), str(got.close)) == (str(want.open), str(want.close))
    assert sum(t.size for t in ticks) == sum(bar.volume for bar in expected)
    assert all(a.time < b.time for a, b in itertools.pairwise(ticks))
    assert all(t.instrument == contract for t in ticks)
    assert all(validate_tick(t, None, {contract}) is None for t in ticks)
    assert all(t.time.date() == date.fromisoformat(day) for t in ticks)


def test_expiry_day_ends_at_the_last_bar() -> None:
    ticks = list(replay("ESZ13", "2013-12-20").ticks())
    assert ticks[-1].time == datetime(2013, 12, 20, 14, 29, 45, tzinfo=UTC)


@pytest.mark.parametrize(("contract", "day"), [("ESZ13", "2013-10-07"), ("ESH14", "2013-12-18")])
def test_bid_ask_come_from_the_quote_bar_of_the_same_minute(contract: str, day: str) -> None:
    ymd, month = day.replace("-", ""), contract_month(contract)
    touch = file_touch(ymd, month)
    ticks = list(replay(contract, day).ticks())
    with_quote = 0
    for t in ticks:
        minute = t.time.replace(second=0, microsecond=0)
        assert (t.bid, t.ask) == touch.get(minute, (None, None))
        with_quote += minute in touch
    assert with_quote > 0.9 * len(ticks)
    assert any(t.bid is not None and t.ask is not None and t.bid < t.ask for t in ticks)


def test_no_quote_file_gives_no_touch(tmp_path: Path) -> None:
    folder = tmp_path / "es" / "minute"
    folder.mkdir(parents=True)
    name = "20131007_es_minute_trade_201312.csv"
    (folder / name).write_bytes((ES / name).read_bytes())
    config = ReplayConfig("ES", "ESZ13", date(2013, 10, 7), date(2013, 10, 7))
    ticks = list(ReplaySource(config, data_dir=tmp_path).ticks())
    assert one_minute_candles(ticks) == file_bars("20131007", "201312")
    assert all(t.bid is None and t.ask is None for t in ticks)


def test_date_range_skips_absent_dates_and_stays_in_order() -> None:
    source = replay("ESZ13", "2013-10-05", "2013-10-15")
    days = ["20131006", "20131007", "20131008", "20131009", "20131010", "20131011", "20131014"]
    assert list(source.dates()) == [date(int(d[:4]), int(d[4:6]), int(d[6:])) for d in days]
    ticks = list(source.ticks())
    assert all(a.time < b.time for a, b in itertools.pairwise(ticks))
    expected = [bar for d in days for bar in file_bars(d, "201312")]
    assert one_minute_candles(ticks) == expected


def test_folding_replay_in_batches_gives_the_same_candles() -> None:
    ticks = list(replay("ESH14", "2013-12-18").ticks())
    closed: list[Candle] = []
    partial, last = None, None
    for lo in range(0, len(ticks), 37):
        step = fold_ticks(partial, ticks[lo : lo + 37], "1m", last_time=last)
        closed.extend(step.closed)
        partial, last = step.partial, step.last_time
    assert partial is not None
    assert [*closed, partial] == file_bars("20131218", "201403")


def test_gc_ticks_pass_through_row_for_row() -> None:
    rows = csv_rows(GC / "20131007_gc_tick_trade_201312.csv")
    ticks = list(replay("GCZ13", "2013-10-07").ticks())
    assert len(ticks) == len(rows) > 30_000
    assert all(a.time <= b.time for a, b in itertools.pairwise(ticks))
    origin = datetime(2013, 10, 7, tzinfo=UTC)
    for t, row in zip(ticks, rows, strict=True):
        assert t.time == origin + timedelta(milliseconds=int(row[0]))
        assert str(t.price) == row[1]
        assert t.size == int(row[2])
        assert (t.bid, t.ask, t.instrument) == (None, None, "GCZ13")
    assert sum(t.size for t in ticks) == sum(int(r[2]) for r in rows)


def test_suspicious_rows_are_still_emitted(tmp_path: Path) -> None:
    folder = tmp_path / "gc" / "tick"
    folder.mkdir(parents=True)
    (folder / "20131008_gc_tick_trade_201312.csv").write_text(
        "276,1313.7,1,usa,,0\n277,1313.6,2,usa,,1\n277,1313.5,0,usa,,0\n"
    )
    config = ReplayConfig("GC", "GCZ13", date(2013, 10, 8), date(2013, 10, 8))
    ticks = list(ReplaySource(config, data_dir=tmp_path).ticks())
    assert [(str(t.price), t.size) for t in ticks] == [("1313.7", 1), ("1313.6", 2), ("1313.5", 0)]


def test_contract_symbols_and_file_months() -> None:
    assert contract_month("ESZ13") == "201312"
    assert contract_month("ESH14", "ES") == "201403"
    assert contract_month("GCZ13", "GC") == "201312"
    assert contract_month("ESM20") == "202006"
    assert contract_symbol("ES", "201403") == "ESH14"
    assert contract_symbol("GC", "201312") == "GCZ13"
    for bad in ["ESA13", "ES13", "ESZ1", ""]:
        with pytest.raises(BadInput):
            contract_month(bad)
    with pytest.raises(BadInput):
        contract_month("GCZ13", "ES")


def test_bad_args_are_refused() -> None:
    with pytest.raises(UnknownRegisteredName):
        create_feed("nope", {}, SETTINGS)
    with pytest.raises(UnknownRegisteredName):
        get_feed_factory("workers.feeds.replay:ReplaySource")
    assert {"replay", "synthetic"} <= set(feed_names())
    good = {"product": "ES", "contract": "ESZ13", "date_from": "2013-10-07"}
    for change in [
        {"contract": "ESQ13"},
        {"contract": "GCZ13"},
        {"date_from": "7 Oct"},
        {"date_to": "2013-10-01"},
        {"date_from": "2015-01-01", "date_to": "2015-01-02"},
        {"speed": 0},
        {"module": "os"},
    ]:
        with pytest.raises(BadInput):
            create_feed("replay", {**good, **change}, SETTINGS)


def test_split_volume_is_exact() -> None:
    for volume in range(0, 200):
        parts = split_volume(volume)
        assert len(parts) == 4
        assert sum(parts) == volume
        assert max(parts) - min(parts) <= 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_pacing_waits_data_time_over_speed() -> None:
    source = replay("ESZ13", "2013-10-07", speed=60)
    assert source.speed == 60.0
    ticks = list(itertools.islice(source.ticks(), 12))  # 3 bars: ticks 15 s of data apart
    clock = FakeClock()
    released = list(paced(ticks, source.speed, clock=clock, sleep=clock.sleep))
    assert released == ticks
    gaps = [(b.time - a.time).total_seconds() / 60 for a, b in itertools.pairwise(ticks)]
    assert clock.sleeps == pytest.approx([g for g in gaps if g > 0])
    assert clock.now == pytest.approx(
        1000.0 + (ticks[-1].time - ticks[0].time).total_seconds() / 60
    )


def test_pacer_does_not_drift_when_the_consumer_is_slow() -> None:
    clock = FakeClock()
    pacer = Pacer(speed=2.0, clock=clock)
    t0 = datetime(2013, 10, 7, tzinfo=UTC)
    assert pacer.wait_for(t0) == 0.0
    assert pacer.wait_for(t0 + timedelta(seconds=10)) == pytest.approx(5.0)
    clock.now += 8.0  # the consumer took longer than the 5 s budget
    assert pacer.wait_for(t0 + timedelta(seconds=12)) == 0.0
    assert pacer.wait_for(t0 + timedelta(seconds=20)) == pytest.approx(2.0)
    assert pacer.wait_for(t0 + timedelta(seconds=20)) == pytest.approx(2.0)


def test_max_speed_never_sleeps() -> None:
    clock = FakeClock()
    ticks = list(itertools.islice(replay("ESZ13", "2013-10-07", speed="max").ticks(), 20))
    assert list(paced(ticks, parse_speed("max"), clock=clock, sleep=clock.sleep)) == ticks
    assert clock.sleeps == []
    assert Pacer(speed=None, clock=clock).wait_for(ticks[-1].time) == 0.0


@pytest.mark.parametrize(
    ("value", "speed"), [("max", None), (None, None), (60, 60.0), ("2.5", 2.5)]
)
def test_parse_speed(value: object, speed: float | None) -> None:
    assert parse_speed(value) == speed


@pytest.mark.parametrize("value", [0, -1, "fast", True, float("inf"), float("nan"), [1]])
def test_bad_speed(value: object) -> None:
    with pytest.raises(BadInput):
        parse_speed(value)
