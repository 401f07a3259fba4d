"""``SessionStep`` on hand-built state fields (the real codec, no Redis): folding is the same
in any batching, the strategy runs only when it may, pending orders count toward the position,
client order ids are deterministic and an order is decided at its candle's end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from models.codec import decode_field, encode_state
from models.meta import CURSOR_FIELD, PROGRESS_FIELD
from models.progress import TickProgress
from models.state import OpenPosition, SessionState, WorkingOrder
from trading.candles import fold_ticks
from trading.intents import client_order_id
from trading.market import Candle, Tick
from workers.sessions.create import NewSession, build_initial_state
from workers.ticks.publisher import encode_tick, epoch_ms
from workers.ticks.step import NewOrder, SessionStep, StepEvent, StreamEntry

SID = "3f0c9a52-0000-4000-8000-000000000001"
T0 = datetime(2013, 10, 7, 13, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
RISING = ["100", "101", "102", "103", "104"]
"""Closes of consecutive 1-minute candles: sma_cross(2, 3) wants long from the 3rd one."""


def initial_state(session_id: str = SID, **changes: Any) -> SessionState:
    request = NewSession(
        name="unit",
        account="ACC-UNIT",
        product="ES",
        contract="ESZ13",
        strategy="sma_cross",
        strategy_args={"fast": "2", "slow": "3"},
    )
    state = build_initial_state(request, session_id, T0 - timedelta(days=1))
    return replace(state, **changes)


def minute_ticks(closes: Sequence[str], per_minute: int = 3) -> list[Tick]:
    """``per_minute`` ticks inside each minute, the last at that minute's close, then one
    tick in the minute after the last (it closes the last candle)."""
    ticks: list[Tick] = []
    for minute, close in enumerate(closes):
        start = T0 + minute * MINUTE
        for k in range(per_minute):
            price = Decimal(close) - (per_minute - 1 - k) * Decimal("0.25")
            ticks.append(Tick("ESZ13", start + k * timedelta(seconds=10), price, 1 + k))
    ticks.append(Tick("ESZ13", T0 + len(closes) * MINUTE, Decimal(closes[-1]), 1))
    return ticks


def entries_of(ticks: Sequence[Tick]) -> list[StreamEntry]:
    out: list[StreamEntry] = []
    for seq, tick in enumerate(ticks):
        t, p, s, b, a = encode_tick(tick)
        values = {b"t": t.encode(), b"p": p.encode(), b"s": s.encode()}
        if b or a:
            values.update({b"b": b.encode(), b"a": a.encode()})
        out.append((f"{epoch_ms(tick)}-{seq}".encode(), values))
    return out


@dataclass
class Session:
    """One session's state hash and candle list, carried from step to step as the drain does."""

    session_id: str
    fields: dict[str, str]
    candles: list[Candle] = field(default_factory=list)
    orders: list[NewOrder] = field(default_factory=list)
    events: list[StepEvent] = field(default_factory=list)
    protective_stops: bool = False

    @classmethod
    def of(cls, state: SessionState, protective_stops: bool = False) -> Session:
        fields = dict(encode_state(state).hash)
        fields[CURSOR_FIELD] = "0-0"
        return cls(state.session.id, fields, list(state.candles), protective_stops=protective_stops)

    def history(self, count: int) -> list[Candle]:
        return self.candles[-count:]

    def step(self, entries: Sequence[StreamEntry]) -> Session:
        step = SessionStep(
            self.session_id, self.fields, self.history, protective_stops=self.protective_stops
        )
        result = step.run(entries)
        self.fields.update(result.fields)
        if result.cursor is not None:
            self.fields[CURSOR_FIELD] = result.cursor
        self.candles.extend(result.candles)
        self.orders.extend(result.new_orders)
        self.events.extend(result.events)
        return self

    def run(self, entries: Sequence[StreamEntry], batch: int) -> Session:
        for start in range(0, len(entries), batch):
            self.step(entries[start : start + batch])
        return self

    @property
    def progress(self) -> TickProgress:
        return TickProgress.from_json(self.fields.get(PROGRESS_FIELD))

    def value(self, name: str) -> Any:
        return decode_field(name, self.fields[name])


def order_summary(orders: Sequence[NewOrder]) -> list[tuple[Any, ...]]:
    return [
        (o.order.client_order_id, o.order.side, o.order.quantity, o.order.intent, o.decided_at)
        for o in orders
    ]


def test_folding_in_any_batches_equals_one_batch() -> None:
    closes = ["100", "101", "102", "101", "99", "98", "99", "101", "103", "102", "100", "97"]
    entries = entries_of(minute_ticks(closes))
    whole = Session.of(initial_state()).step(entries)
    assert len(whole.orders) >= 3, "the series must make sma_cross trade in both directions"
    for batch in (1, 2, 5, 7):
        split = Session.of(initial_state()).run(entries, batch)
        assert split.fields == whole.fields, batch
        assert split.candles == whole.candles, batch
        assert order_summary(split.orders) == order_summary(whole.orders), batch
    folded = fold_ticks(None, minute_ticks(closes), "1m")
    assert whole.candles == list(folded.closed)
    assert whole.value("latest_partial_candle") == folded.partial
    assert whole.progress.ticks_processed == len(entries)
    assert whole.fields[CURSOR_FIELD] == f"{epoch_ms(minute_ticks(closes)[-1])}-{len(entries) - 1}"


def test_warm_up_suppresses_the_strategy() -> None:
    session = Session.of(initial_state())
    assert session.value("warmup_periods") == 3
    ticks = minute_ticks(RISING[:3])
    before_third_close = [e for e in entries_of(ticks) if int(e[1][b"t"]) < epoch_ms(ticks[-1])]
    session.step(before_third_close)
    assert session.progress.candles_closed == 2
    assert session.value("strategy").state == {"last_direction": 0}
    assert session.orders == []

    session.step(entries_of(ticks)[len(before_third_close) :])
    assert session.progress.candles_closed == 3
    assert session.value("strategy").state == {"last_direction": 1}
    assert order_summary(session.orders) == [
        (client_order_id(SID, 1, 0), "buy", 1, "entry", T0 + 3 * MINUTE)
    ]


@pytest.mark.parametrize("flags", [{"rolling": True}, {"trading": False}])
def test_rolling_or_not_trading_suppresses_the_strategy(flags: dict[str, Any]) -> None:
    session = Session.of(initial_state(**flags)).step(entries_of(minute_ticks(RISING)))
    assert session.progress.candles_closed == len(RISING)
    assert len(session.candles) == len(RISING)
    assert session.orders == []
    assert session.progress.signal_seq == 0
    assert session.value("strategy").state == {"last_direction": 0}


def pending(side: str, quantity: int, seq: int = 7) -> dict[str, WorkingOrder]:
    coid = client_order_id(SID, seq, 0)
    order = WorkingOrder(coid, "ESZ13", side, quantity, "market", "entry", "new", T0)  # type: ignore[arg-type]
    return {coid: order}


def test_a_pending_order_counts_toward_the_position() -> None:
    waiting = initial_state(orders=pending("buy", 1))
    session = Session.of(waiting).step(entries_of(minute_ticks(RISING)))
    assert session.value("strategy").state == {"last_direction": 1}
    assert session.orders == [], "no second buy while the first one is pending"

    held = initial_state(open_position=OpenPosition("ESZ13", 1, Decimal("100")))
    assert Session.of(held).step(entries_of(minute_ticks(RISING))).orders == []

    falling = list(reversed(RISING))
    reversal = Session.of(waiting).step(entries_of(minute_ticks(falling)))
    assert [(o.order.side, o.order.quantity, o.order.intent) for o in reversal.orders] == [
        ("sell", 1, "exit"),
        ("sell", 1, "entry"),
    ]
    working = reversal.value("orders")
    assert set(working) == set(pending("buy", 1)) | {
        o.order.client_order_id for o in reversal.orders
    }


def test_client_order_ids_are_deterministic_and_per_session() -> None:
    closes = ["100", "101", "102", "101", "99", "98", "99", "101", "103"]
    entries = entries_of(minute_ticks(closes))
    first = Session.of(initial_state()).step(entries)
    again = Session.of(initial_state()).step(entries)
    other_id = SID[:-1] + "2"
    other = Session.of(initial_state(session_id=other_id)).step(entries)
    assert order_summary(first.orders) == order_summary(again.orders)
    ids = [o.order.client_order_id for o in first.orders]
    assert len(set(ids)) == len(ids)
    seqs = sorted({int(coid.split("-")[1]) for coid in ids})
    assert seqs == list(range(1, first.progress.signal_seq + 1))
    for new in first.orders:
        seq, leg = (int(x) for x in new.order.client_order_id.split("-")[1:])
        assert new.order.client_order_id == client_order_id(SID, seq, leg)
    assert not set(ids) & {o.order.client_order_id for o in other.orders}
    assert len(other.orders) == len(first.orders)


def test_an_order_is_decided_at_the_end_of_its_candle() -> None:
    session = Session.of(initial_state()).step(entries_of(minute_ticks(RISING)))
    (new,) = session.orders
    third = session.candles[2]
    assert new.decided_at == third.start + MINUTE == T0 + 3 * MINUTE
    assert new.order.created_at == new.decided_at
    assert new.account == "ACC-UNIT"
    assert new.time_in_force == "day"
    assert session.value("orders") == {new.order.client_order_id: new.order}


def test_bad_ticks_are_counted_by_reason_and_reported_once() -> None:
    ticks = minute_ticks(RISING)
    entries = entries_of(ticks)
    last_ms = epoch_ms(ticks[5])
    bad: list[StreamEntry] = [
        (b"1-0", {b"t": str(last_ms).encode(), b"p": b"NaN", b"s": b"1"}),
        (b"1-1", {b"t": str(last_ms).encode(), b"p": b"-1", b"s": b"1"}),
        (b"1-2", {b"t": str(last_ms).encode(), b"p": b"100", b"s": b"-5"}),
        (b"1-3", {b"t": str(last_ms - 60_000).encode(), b"p": b"100", b"s": b"1"}),
        (b"1-4", {b"t": b"abc", b"p": b"100", b"s": b"1"}),
        (b"1-5", {b"t": str(last_ms).encode(), b"s": b"1"}),
    ]
    session = Session.of(initial_state())
    session.step(entries[:6] + bad[:3]).step(bad[3:] + entries[6:]).step(bad[:1])
    assert session.progress.rejected == {
        "bad_price": 3,
        "bad_size": 1,
        "time_backwards": 1,
        "unparseable": 2,
    }
    assert session.progress.ticks_processed == len(entries)
    assert [e.message for e in session.events] == [
        "bad tick rejected: bad_price",
        "bad tick rejected: bad_size",
        "bad tick rejected: time_backwards",
        "bad tick rejected: unparseable",
    ]
    clean = Session.of(initial_state()).step(entries)
    assert session.candles == clean.candles
    assert order_summary(session.orders) == order_summary(clean.orders)


def test_a_failing_strategy_stops_the_session_with_one_event() -> None:
    state = initial_state()
    broken = replace(state.strategy, args={"fast": 3, "slow": 2, "quantity": 1})
    session = Session.of(replace(state, strategy=broken)).step(entries_of(minute_ticks(RISING)))
    assert session.value("trading") is False
    assert session.orders == []
    assert [(e.kind, e.severity) for e in session.events] == [("strategy", "error")]
    assert "sma_cross" in session.events[0].message
    assert session.progress.candles_closed == len(RISING)
    later = session.step(entries_of([Tick("ESZ13", T0 + 9 * MINUTE, Decimal("90"), 1)]))
    assert later.progress.candles_closed == len(RISING) + 1
    assert len(later.events) == 1
