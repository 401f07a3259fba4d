"""The pieces a recovery is rebuilt from: signal sequence, candle re-warming, fills, working
copies, progress, snapshots (pure), and the two small stores they use (real SQLite, real Redis).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import cast

import pytest
import redis

from models.codec import decode_state, encode_state, state_key
from trading.contracts import spec_for_product
from trading.exceptions import SessionExists
from trading.intents import client_order_id
from trading.market import Candle
from trading.recovery import (
    OpenStop,
    Position,
    Rewarmed,
    history_window,
    max_signal_seq,
    rewarm,
    signal_seq_after,
    stop_price_for,
)
from trading.stops import attached_stop_id, move_stop_id
from trading.timeframes import parse_timeframe
from workers.brokers.commands import BrokerOrder
from workers.db.engines import make_engine, upgrade
from workers.db.session_rows import create_session_row
from workers.recovery.rebuild import (
    Definition,
    OrderRecord,
    RecordedFill,
    build_state,
    progress_after,
    replay_fills,
    working_copy,
)
from workers.sessions.create import NewSession, build_initial_state
from workers.state.store import StateStore
from workers.ticks.snapshots import (
    StrategySnapshot,
    load_snapshot,
    save_snapshots,
    snapshot_of,
)
from workers.ticks.step import StepResult

SID = "5d0c3d7e-1111-4a4a-9c9c-000000000001"
T0 = datetime(2013, 10, 7, 13, 30, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
ONE_MIN = parse_timeframe("1m")


def entry(ms: int, price: str, seq: int = 0) -> tuple[bytes, dict[bytes, bytes]]:
    return f"{ms}-{seq}".encode(), {b"t": str(ms).encode(), b"p": price.encode(), b"s": b"1"}


def minute_entries(minutes: int, per_minute: int = 3) -> list[tuple[bytes, dict[bytes, bytes]]]:
    out = []
    for m in range(minutes):
        for k in range(per_minute):
            ms = T0_MS + m * 60_000 + k * 10_000
            out.append(entry(ms, f"{1680 + m}.{25 * k:02d}"))
    return out


# --------------------------------------------------------------------------- signal sequence


def test_the_sequence_continues_after_every_client_id_the_session_used() -> None:
    mine = [client_order_id(SID, seq, leg) for seq, leg in ((1, 0), (7, 0), (7, 1), (3, 0))]
    others = [client_order_id("another-session", 40, 0), "EXT-991", "abc-12-0"]
    assert max_signal_seq(SID, mine + others) == 7
    assert max_signal_seq(SID, others) == 0
    assert signal_seq_after(SID, mine, snapshot_seq=5) == 7
    assert signal_seq_after(SID, mine, snapshot_seq=9) == 9
    next_id = client_order_id(SID, signal_seq_after(SID, mine, 0) + 1, 0)
    assert next_id not in mine
    moved = [*mine, move_stop_id(SID, 9), attached_stop_id(client_order_id(SID, 12, 0))]
    assert max_signal_seq(SID, moved) == 9, "a stop move used its sequence; an attached stop not"
    assert max_signal_seq(SID, [move_stop_id("another-session", 20)]) == 0


# --------------------------------------------------------------------------- candles


def test_history_window_reads_back_until_warm_up_is_covered() -> None:
    entries = minute_entries(10)
    newest_first = list(reversed(entries))
    done, _ = history_window(newest_first[:12], ONE_MIN, 3, None, 500, at_stream_start=False)
    assert not done, "the oldest minute read may be partial: 3 whole ones + the newest needed"
    done, chosen = history_window(newest_first[:15], ONE_MIN, 3, None, 500, at_stream_start=False)
    assert done and chosen == entries[-12:]
    done, chosen = history_window(newest_first, ONE_MIN, 3, None, 500, at_stream_start=False)
    assert done and chosen == entries[-12:], "cut at a candle boundary, no more than needed"


def test_history_window_reaches_back_to_the_snapshot_within_bounds() -> None:
    entries = minute_entries(6)
    newest_first = list(reversed(entries))
    since = entries[7][0].decode()
    assert not history_window(newest_first[:9], ONE_MIN, 1, since, 500, False)[0]
    done, chosen = history_window(newest_first, ONE_MIN, 1, since, 500, False)
    assert done and chosen == entries[6:], "from the candle holding the snapshot's cursor"
    done, chosen = history_window(newest_first, ONE_MIN, 1, since, 2, False)
    assert done and chosen == entries[9:], "never more than max_candles + 1 candles"


def test_history_window_takes_what_there_is_at_the_stream_start() -> None:
    entries = minute_entries(4)
    newest_first = list(reversed(entries))
    done, chosen = history_window(newest_first, ONE_MIN, 5, None, 500, at_stream_start=True)
    assert done and chosen == entries
    assert history_window([], ONE_MIN, 5, None, 500, at_stream_start=True) == (True, [])


def test_rewarm_folds_without_a_strategy_and_rejects_bad_ticks() -> None:
    entries = minute_entries(5)
    bad = (b"1-0", {b"t": b"nope", b"p": b"1", b"s": b"1"})
    backwards = entry(T0_MS - 60_000, "1600.00", seq=9)
    warmed = rewarm("ESZ13", [*entries[:4], bad, backwards, *entries[4:]], ONE_MIN)
    assert len(warmed.closed) == 4
    assert warmed.partial is not None and warmed.partial.start == T0 + timedelta(minutes=4)
    assert warmed.closed[0].open == Decimal("1680.00") and warmed.closed[0].close == Decimal(
        "1680.50"
    )
    assert warmed.ticks == len(entries)
    assert warmed.rejected == {"unparseable": 1, "time_backwards": 1}
    assert warmed.last_ms == int(entries[-1][1][b"t"])
    snapshot_ms = T0_MS + 2 * 60_000 + 10_000
    assert warmed.closed_after(snapshot_ms, ONE_MIN) == 2
    assert warmed.closed_after(None, ONE_MIN) == 4


def test_progress_continues_the_snapshot_counters() -> None:
    warmed = rewarm("ESZ13", minute_entries(5), ONE_MIN)
    after_snapshot = progress_after(warmed, ONE_MIN, 12, 40, T0_MS + 2 * 60_000 + 10_000)
    assert after_snapshot.candles_closed == 42
    assert after_snapshot.signal_seq == 12
    fresh = progress_after(warmed, ONE_MIN, 0, None, None)
    assert fresh.candles_closed == 4 and fresh.last_ms == warmed.last_ms
    empty = progress_after(Rewarmed(), ONE_MIN, 3, 7, 99)
    assert (empty.candles_closed, empty.last_ms) == (7, 99)


# --------------------------------------------------------------------------- fills and orders


def fill(n: int, qty: int, price: str, contract: str = "ESZ13") -> RecordedFill:
    return RecordedFill(
        execution_id=f"PB-1-{n}",
        client_order_id=client_order_id(SID, n, 0),
        contract=contract,
        quantity=qty,
        price=Decimal(price),
        commission=Decimal("2.50"),
        time=T0 + timedelta(minutes=n),
    )


def test_replayed_fills_give_trades_pnl_and_the_position() -> None:
    fills = [fill(1, 2, "1680.00"), fill(2, -1, "1682.00"), fill(3, -3, "1679.00")]
    replay = replay_fills(fills, "ESZ13", Decimal(50))
    assert [t.execution_id for t in replay.trades] == ["PB-1-1", "PB-1-2", "PB-1-3"]
    assert [t.realized_pnl for t in replay.trades] == [0, Decimal(100), Decimal(-50)]
    assert replay.realized == Decimal(50)
    assert replay.commissions == Decimal("7.50")
    assert (replay.quantity, replay.average_price) == (-2, Decimal("1679.00"))
    assert replay_fills(fills, "ESH14", Decimal(50)).quantity == 0


def record(status: str = "sent") -> OrderRecord:
    return OrderRecord(
        client_order_id=client_order_id(SID, 4, 0),
        contract="ESZ13",
        side="buy",
        quantity=2,
        order_type="limit",
        intent="entry",
        status=status,  # type: ignore[arg-type]
        created_at=T0,
        limit_price=Decimal("1679.00"),
    )


def broker_order(status: str, filled: int = 0) -> BrokerOrder:
    return BrokerOrder(
        client_order_id=record().client_order_id,
        broker_order_id="PB-ACC-9",
        session_id=SID,
        contract="ESZ13",
        side="buy",
        quantity=2,
        filled_quantity=filled,
        order_type="limit",
        limit_price=Decimal("1679.00"),
        stop_price=None,
        status=status,  # type: ignore[arg-type]
        decided_at=T0,
        average_fill_price=Decimal("1679.00") if filled else None,
    )


def test_working_copies_follow_the_broker() -> None:
    unsent = working_copy(record("new"), None)
    assert unsent is not None and unsent.status == "new" and unsent.broker_order_id is None
    resting = working_copy(record(), broker_order("working"))
    assert resting is not None and resting.status == "working"
    assert resting.broker_order_id == "PB-ACC-9"
    partial = working_copy(record(), broker_order("working", filled=1))
    assert partial is not None and partial.status == "partially_filled"
    assert partial.filled_quantity == 1
    for final in ("filled", "cancelled", "rejected"):
        assert working_copy(record(), broker_order(final, 2 if final == "filled" else 0)) is None


# --------------------------------------------------------------------------- the state


def definition() -> Definition:
    initial = build_initial_state(
        NewSession("rebuilt", "ACC-R", "ES", "ESZ13", "sma_cross", {"fast": "3", "slow": "8"}),
        SID,
        T0,
    )
    return Definition(
        session=initial.session,
        strategy="sma_cross",
        strategy_args=initial.strategy.args,
        strategy_initial_state=initial.strategy.state,
        warmup_periods=initial.warmup_periods,
        market_data_source=initial.market_data_source,
        account_manager=initial.account_manager,
        order_template=initial.order_template,
        spec=spec_for_product("ES"),
    )


def test_the_rebuilt_state_is_complete_and_round_trips_through_the_codec() -> None:
    warmed = rewarm("ESZ13", minute_entries(6), ONE_MIN)
    replay = replay_fills([fill(1, 1, "1680.00")], "ESZ13", Decimal(50))
    order = working_copy(record(), broker_order("working"))
    assert order is not None
    state = build_state(
        definition(),
        "ESZ13",
        ONE_MIN,
        {"prev": "x"},
        Position(1, Decimal("1680.00"), T0),
        {order.client_order_id: order},
        replay,
        Decimal("99997.50"),
        warmed,
        max_trades=1000,
    )
    assert state.open_position is not None and state.open_position.quantity == 1
    assert state.strategy.state == {"prev": "x"}
    assert state.candles == warmed.closed and state.latest_partial_candle == warmed.partial
    assert state.account_balance == Decimal("99997.50")
    assert state.account_pnl_info.unrealized == (warmed.partial.close - 1680) * 50  # type: ignore[union-attr]
    assert state.candle_key == "ESZ13:1m" and state.warmup_periods == 8
    encoded = encode_state(state)
    assert decode_state(encoded.hash, encoded.candles, encoded.trades) == state


def test_a_snapshot_is_taken_only_after_a_step_that_closed_candles() -> None:
    fields = {
        "strategy": json.dumps({"module": "sma_cross", "args": {}, "state": {"a": 1}}),
        "_progress": json.dumps(
            {
                "last_ms": 5,
                "signal_seq": 2,
                "candles_closed": 9,
                "ticks_processed": 3,
                "rejected": {},
            }
        ),
    }
    assert snapshot_of(SID, fields, StepResult(), "5-0", T0) is None
    candle = Candle(T0, Decimal(1), Decimal(1), Decimal(1), Decimal(1), 1)
    result = StepResult(candles=[candle])
    result.fields["strategy"] = json.dumps({"module": "sma_cross", "args": {}, "state": {"a": 2}})
    progress = {**json.loads(fields["_progress"]), "candles_closed": 10}
    result.fields["_progress"] = json.dumps(progress)
    snap = snapshot_of(SID, fields, result, "7-1", T0)
    assert snap is not None
    assert (snap.strategy_state, snap.signal_seq, snap.candles_closed) == ({"a": 2}, 2, 10)
    assert (snap.last_ms, snap.cursor) == (5, "7-1")


# --------------------------------------------------------------------------- the stores


@pytest.mark.parametrize("backend", ["sqlite_url", "pg_url"])
def test_snapshots_upsert_and_never_move_backwards(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(backend)
    upgrade(url)
    engine = make_engine(url)
    try:
        create_session_row(
            engine,
            build_initial_state(
                NewSession("snap", "ACC-S", "ES", "ESZ13", "sma_cross", {}), SID, T0
            ),
        )
        assert load_snapshot(engine, SID) is None

        def snap(closed: int, cursor: str) -> StrategySnapshot:
            return StrategySnapshot(SID, {"n": closed}, 1, closed, T0_MS, cursor, T0)

        save_snapshots(engine, [snap(3, "1-0")])
        save_snapshots(engine, [snap(5, "2-0"), snap(4, "1-5")])
        loaded = load_snapshot(engine, SID)
        assert loaded is not None and (loaded.candles_closed, loaded.cursor) == (5, "2-0")
        save_snapshots(engine, [snap(4, "1-9")])
        loaded = load_snapshot(engine, SID)
        assert loaded is not None and loaded.cursor == "2-0"
        assert loaded.strategy_state == {"n": 5} and loaded.taken_at == T0
    finally:
        engine.dispose()


def test_create_writes_meta_fields_with_the_state_and_keeps_the_fence(
    redis_client: redis.Redis,
) -> None:
    store = StateStore(redis_client, 1000)
    state = build_initial_state(NewSession("m", "ACC-M", "ES", "ESZ13", "sma_cross", {}), SID, T0)
    store.create(state)
    lease = store.acquire(SID)
    store.release(lease)
    store.delete(SID)
    store.create(state, {"_cursor": "42-0", "_progress": "{}"})
    assert cast(bytes, redis_client.hget(state_key(SID), "_cursor")) == b"42-0"
    assert store.load(SID) == state
    assert store.acquire(SID).fence > lease.fence
    with pytest.raises(SessionExists):
        store.create(state, {"_cursor": "43-0"})
    with pytest.raises(ValueError):
        store.create(state, {"cursor": "x"})
    assert cast(bytes, redis_client.hget(state_key(SID), "_cursor")) == b"42-0"


def test_a_rebuilt_position_takes_the_price_of_the_newest_open_stop_that_closes_it() -> None:
    older = OpenStop("a-stop-1-0", "ESZ13", "sell", Decimal("1660.00"))
    newest = OpenStop("a-move-4", "ESZ13", "sell", Decimal("1665.25"))
    assert stop_price_for(2, "ESZ13", [older, newest]) == Decimal("1665.25")
    assert stop_price_for(0, "ESZ13", [older, newest]) is None
    assert stop_price_for(-1, "ESZ13", [older, newest]) is None, (
        "a sell stop does not close a short"
    )
    assert stop_price_for(1, "ESH14", [older, newest]) is None, "another contract's stop"
    assert stop_price_for(1, "ESZ13", []) is None
