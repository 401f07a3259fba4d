"""Replay warm-up parity on the real ES data: a session warmed from the Lean files decides
exactly as one that read those bars from its stream, on every candle after the warm-up.

Both sessions run the tick path's real step (``workers.ticks.step.SessionStep``: validation,
folding, the decision) over the same live entries; A first reads the warm-up bars from its
stream, B starts from ``workers.feeds.history`` (the state ``workers.sessions.warmup`` gives a
new session)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from models.codec import encode_state
from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from trading.market import Candle, StreamEntry
from trading.timeframes import parse_timeframe
from workers.feeds.history import bar_entries, candles_before_start, warm_from_history
from workers.feeds.replay import ReplayConfig, ReplayHistory, ReplaySource
from workers.sessions.create import NewSession, build_initial_state
from workers.settings import DEFAULT_MARKET_DATA_DIR
from workers.ticks.publisher import encode_tick
from workers.ticks.step import SessionStep

UNTIL = datetime(2013, 10, 7, 15, 2, tzinfo=UTC)  # mid-candle of a 5m session


class Session:
    """One session's fields and candles, stepped like the tick path steps it."""

    def __init__(self, fields: dict[str, str], candles: list[Candle]) -> None:
        self.fields = fields
        self.candles = candles
        self.orders: list[tuple[str, str]] = []
        self.closed: list[Candle] = []

    def step(self, entries: list[StreamEntry]) -> None:
        for i in range(0, len(entries), 37):  # batches of an odd size, as rounds come
            result = SessionStep("s-1", self.fields, lambda n: self.candles[-n:] if n else []).run(
                entries[i : i + 37]
            )
            self.fields.update(result.fields)
            self.candles.extend(result.candles)
            self.closed.extend(result.candles)
            for new in result.new_orders:
                self.orders.append((repr(new.order), new.decided_at.isoformat()))


def entries_of(ticks: list[Any]) -> list[StreamEntry]:
    keys = (b"t", b"p", b"s", b"b", b"a")
    return [
        (f"{i + 1}-0".encode(), dict(zip(keys, (v.encode() for v in encode_tick(t)), strict=True)))
        for i, t in enumerate(ticks)
    ]


def test_a_session_warmed_from_the_files_decides_as_one_fed_the_bars() -> None:
    request = NewSession(
        name="parity",
        account="ACC",
        product="ES",
        contract="ESZ13",
        strategy="sma_cross",
        strategy_args={"fast": "3", "slow": "8"},
        timeframe="5m",
    )
    state = build_initial_state(request, "s-1", datetime(2013, 10, 7, tzinfo=UTC))
    timeframe = parse_timeframe("5m")
    closed = candles_before_start(state.warmup_periods)
    history = ReplayHistory(DEFAULT_MARKET_DATA_DIR)
    warmed = warm_from_history(history, "ESZ13", UNTIL, timeframe, closed)
    assert len(warmed.closed) == closed == 7 and warmed.partial is not None

    day = ReplaySource(
        ReplayConfig("ES", "ESZ13", date(2013, 10, 7), date(2013, 10, 7)), DEFAULT_MARKET_DATA_DIR
    )
    live = [t for t in day.ticks() if t.time >= UNTIL]
    assert len(live) > 1000

    # A: its stream holds the warm-up bars (from the first warmed candle on), then the live ones
    first = warmed.closed[0].start
    bars = history.history("ESZ13", UNTIL, 200)
    a_prefix = bar_entries([b for b in bars if b.start >= first], "ESZ13")
    a = Session(dict(encode_state(state).hash), [])
    a.step([*a_prefix])
    assert a.orders == [] and a.candles == list(warmed.closed)

    # B: created warmed (workers.sessions.warmup's state), reads only the live ones
    b_state = replace(state, candles=warmed.closed, latest_partial_candle=warmed.partial)
    fields = dict(encode_state(b_state).hash)
    fields[PROGRESS_FIELD] = TickProgress(
        last_ms=warmed.last_ms, candles_closed=len(warmed.closed), ticks_processed=warmed.ticks
    ).to_json()
    b = Session(fields, list(warmed.closed))

    live_entries = entries_of(live)
    a.step(live_entries)
    b.step(live_entries)
    assert b.closed == a.closed[-len(b.closed) :] and len(b.closed) > 50
    assert a.orders, "the strategy traded on the live part"
    assert b.orders == a.orders
    assert b.fields["strategy"] == a.fields["strategy"]
