"""The Redis state store on the private Redis: exact round trips, refusals, fenced and
all-or-nothing writes, bounded lists, one cluster slot per session."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from models.codec import (
    HASH_FIELDS,
    candles_key,
    decode_candle,
    decode_trade,
    encode_field,
    fence_key,
    lock_key,
    session_keys,
    state_key,
    trades_key,
)
from models.state import OpenPosition, SessionState, Trade, WorkingOrder
from tests.kit.wait import wait_until
from tests.models.test_codec import sample_state
from trading.exceptions import (
    LockBusy,
    ServiceUnavailable,
    SessionExists,
    StaleFence,
    UnknownSession,
)
from trading.market import Candle
from workers.state import lease_keeper
from workers.state.store import StateChanges, StateStore
from workers.tools.bench.env import free_port

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 14, 13, 30, tzinfo=UTC)
SID = "0b9c6a52-58c1-4c43-9d1e-5b0f7f1e2a10"


def candle(i: int) -> Candle:
    price = Decimal("5000.25") + i
    return Candle(T0 + timedelta(minutes=i), price, price + 1, price - 1, price, 10 + i)


def trade(i: int) -> Trade:
    return Trade(
        f"x{i}",
        f"c{i}",
        "ESM5",
        1 - 2 * (i % 2),
        Decimal("5000.5"),
        Decimal("2.10"),
        T0 + timedelta(seconds=i),
        Decimal("-12.50"),
    )


def rich_state(session_id: str = SID) -> SessionState:
    order = WorkingOrder(
        "c1", "ESM5", "buy", 2, "limit", "entry", "working", T0, limit_price=Decimal("4999.75")
    )
    return sample_state(
        session_id,
        orders={"c1": order},
        trades=(trade(0), trade(1)),
        candles=tuple(candle(i) for i in range(3)),
        open_position=OpenPosition("ESM5", -2, Decimal("5001.00"), None, T0),
        account_balance=Decimal("1E+5"),
        latest_partial_candle=candle(3),
        strategy=replace(sample_state().strategy, state={"n": [1, None, {"a": True}], "s": "x"}),
        rolling_close_qty=None,
        contract_details=replace(sample_state().contract_details, expiry=date(2025, 6, 20)),
    )


def dump(client: redis.Redis) -> dict[bytes, Any]:
    """Every key in the database with its type and full content."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"hash":
            out[key] = (kind, client.hgetall(key))
        elif kind == b"list":
            out[key] = (kind, client.lrange(key, 0, -1))
        else:
            out[key] = (kind, client.get(key))
    return out


@pytest.fixture
def store(redis_client: redis.Redis) -> StateStore:
    return StateStore(redis_client, lock_ttl_ms=5_000, max_candles=5, max_trades=4)


def test_create_then_load_is_exact(store: StateStore) -> None:
    state = rich_state()
    store.create(state)
    loaded = store.load(SID)
    assert loaded == state
    assert repr(loaded) == repr(state)
    assert store.exists(SID)


def test_decoding_clients_work_too(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    text_store = StateStore(client, lock_ttl_ms=5_000)
    text_store.create(rich_state())
    lease = text_store.acquire(SID)
    assert lease.value("account_balance") == Decimal("1E+5")
    text_store.write(lease, StateChanges.of({"warmup_periods": 3}), release=True)
    assert text_store.load(SID) == replace(rich_state(), warmup_periods=3)
    client.close()


def test_unknown_sessions_are_refused(store: StateStore) -> None:
    with pytest.raises(UnknownSession):
        store.load("nope")
    with pytest.raises(UnknownSession):
        store.acquire("nope")
    assert not store.exists("nope")
    store.create(rich_state())
    lease = store.acquire(SID)
    assert store.delete(SID)
    with pytest.raises(UnknownSession):
        store.write(lease, StateChanges.of({"warmup_periods": 1}))
    with pytest.raises(UnknownSession):
        store.load(SID)


def test_create_twice_is_refused_and_keeps_the_first(
    store: StateStore, redis_client: redis.Redis
) -> None:
    store.create(rich_state())
    before = dump(redis_client)
    with pytest.raises(SessionExists):
        store.create(replace(rich_state(), candle_key="other"))
    assert dump(redis_client) == before


def test_a_partial_write_changes_only_its_fields(
    store: StateStore, redis_client: redis.Redis
) -> None:
    store.create(rich_state())
    before = redis_client.hgetall(state_key(SID))
    lease = store.acquire(SID)
    assert lease.value("portfolio_heat") == Decimal("1773.25")
    changes = StateChanges.of(
        {"warmup_periods": 9, "portfolio_heat": Decimal("0.05"), "rolling_close_order_id": None},
        candles=[candle(3)],
        trades=[trade(2)],
    )
    store.write(lease, changes, release=True)
    after = redis_client.hgetall(state_key(SID))
    changed = {k.decode() for k in after if after[k] != before.get(k)}
    assert changed == {"warmup_periods", "portfolio_heat", "_fence"}
    assert after[b"rolling_close_order_id"] == b"null"
    assert int(after[b"_fence"]) == lease.fence
    expected = replace(
        rich_state(),
        warmup_periods=9,
        portfolio_heat=Decimal("0.05"),
        candles=(*rich_state().candles, candle(3)),
        trades=(*rich_state().trades, trade(2)),
    )
    assert store.load(SID) == expected
    assert not redis_client.exists(lock_key(SID))


def test_a_stale_write_leaves_every_key_untouched(
    store: StateStore, redis_client: redis.Redis
) -> None:
    store.create(rich_state())
    old = store.acquire(SID)
    store.release(old)
    newer = store.acquire(SID)
    store.write(newer, StateChanges.of({"candle_key": "newer"}))
    before = dump(redis_client)
    everything = StateChanges.of(
        {"warmup_periods": 99, "trading": False}, candles=[candle(9)], trades=[trade(9)]
    )
    with pytest.raises(StaleFence):
        store.write(old, everything, release=True)
    with pytest.raises(StaleFence):
        store.write_state(old, replace(rich_state(), candles=()), release=True)
    assert dump(redis_client) == before
    assert redis_client.get(lock_key(SID)) == newer.token.encode()


def test_delete_keeps_the_fence_so_old_leases_stay_refused(
    store: StateStore, redis_client: redis.Redis
) -> None:
    store.create(rich_state())
    old = store.acquire(SID)
    assert store.delete(SID)
    assert redis_client.exists(*session_keys(SID)[:4]) == 0
    store.create(rich_state())
    store.acquire(SID, wait_s=0)
    with pytest.raises(StaleFence):
        store.write(old, StateChanges.of({"warmup_periods": 5}))
    assert store.load(SID).warmup_periods == 0


def test_lists_are_trimmed_to_their_bounds(store: StateStore, redis_client: redis.Redis) -> None:
    store.create(replace(rich_state(), candles=tuple(candle(i) for i in range(8))))
    assert [decode_candle(c) for c in redis_client.lrange(candles_key(SID), 0, -1)] == [
        candle(i) for i in range(3, 8)
    ]
    lease = store.acquire(SID)
    store.write(
        lease,
        StateChanges.of(candles=[candle(8), candle(9)], trades=[trade(i) for i in range(2, 7)]),
    )
    assert [decode_candle(c) for c in redis_client.lrange(candles_key(SID), 0, -1)] == [
        candle(i) for i in range(5, 10)
    ]
    assert [decode_trade(t) for t in redis_client.lrange(trades_key(SID), 0, -1)] == [
        trade(i) for i in range(3, 7)
    ]


def test_write_state_replaces_everything(store: StateStore) -> None:
    store.create(rich_state())
    new = replace(rich_state(), candles=(candle(7),), trades=(), orders={}, trading=False)
    with store.locked(SID) as lease:
        store.write_state(lease, new)
    assert store.load(SID) == new
    with pytest.raises(ValueError):
        store.write_state(store.acquire(SID), rich_state("someone-else"))


def test_every_key_of_a_session_is_in_one_cluster_slot() -> None:
    for sid in (SID, "a", "es-sma.1:x"):
        slots = {key_slot(key.encode()) for key in session_keys(sid)}
        assert len(slots) == 1
    assert key_slot(state_key("a").encode()) != key_slot(state_key("b").encode())


def test_lease_rules(store: StateStore, redis_client: redis.Redis) -> None:
    store.create(rich_state())
    first = store.acquire(SID, with_state=False)
    assert first.fields == {}
    with pytest.raises(LockBusy):
        store.acquire(SID)
    with pytest.raises(LockBusy):
        store.acquire(SID, wait_s=0.05)
    intruder = replace(first, token="not-the-token")
    assert not store.renew(intruder)
    assert not store.release(intruder)
    assert store.renew(first)
    assert store.release(first)
    assert not store.release(first)
    second = store.acquire(SID)
    assert second.fence == first.fence + 1
    assert set(second.fields) == set(HASH_FIELDS)
    assert second.fields["warmup_periods"] == encode_field("warmup_periods", 0)


def test_acquire_waits_for_an_expiring_lease(redis_client: redis.Redis) -> None:
    short = StateStore(redis_client, lock_ttl_ms=200)
    short.create(rich_state())
    held = short.acquire(SID)
    started = time.monotonic()
    waited = short.acquire(SID, wait_s=5)
    assert time.monotonic() - started > 0.1
    assert waited.fence == held.fence + 1


def test_locked_renews_while_the_body_runs_and_releases(redis_client: redis.Redis) -> None:
    short = StateStore(redis_client, lock_ttl_ms=300)
    short.create(rich_state())
    with short.locked(SID) as lease:
        start = time.monotonic()

        def held_past_three_ttls() -> bool:
            assert redis_client.get(lock_key(SID)) == lease.token.encode()
            return time.monotonic() - start > 1.0

        wait_until(held_past_three_ttls, timeout=5, what="lease renewal")
        short.write(lease, StateChanges.of({"warmup_periods": 4}))
    assert not redis_client.exists(lock_key(SID))
    assert int(redis_client.get(fence_key(SID))) == lease.fence
    assert short.load(SID).warmup_periods == 4


def test_a_write_that_releases_leaves_locked_nothing_to_release(
    store: StateStore, redis_client: redis.Redis
) -> None:
    """The body's last write drops the lock with its changes (one round trip less): the lock is
    free as soon as the write is done, and leaving ``locked`` sends no release of its own."""
    store.create(rich_state())
    with store.locked(SID) as lease:
        store.write(lease, StateChanges.of({"warmup_periods": 5}), release=True)
        assert not redis_client.exists(lock_key(SID)), "free once the write is done"
        other = store.try_acquire(SID)
        assert other is not None, "another worker can take it at once"
        redis_client.config_resetstat()
    assert redis_client.get(lock_key(SID)) == other.token.encode(), "the other's lock stays"
    assert "cmdstat_evalsha" not in redis_client.info("commandstats"), "no release was sent"
    assert store.release(other)
    assert store.load(SID).warmup_periods == 5


def test_locked_bodies_share_one_keeper_thread(redis_client: redis.Redis) -> None:
    """Leases held one after another and side by side are renewed by the store's one keeper
    thread, not by a thread per lock held."""
    short = StateStore(redis_client, lock_ttl_ms=300)
    for n in range(3):
        short.create(rich_state(f"{SID}-{n}"))
    threads = set()
    for _ in range(20):
        with short.locked(f"{SID}-0"):
            threads.add(short._keeper.thread)
    with short.locked(f"{SID}-1") as one, short.locked(f"{SID}-2") as two:
        start = time.monotonic()

        def both_held_past_three_ttls() -> bool:
            assert redis_client.get(lock_key(one.session_id)) == one.token.encode()
            assert redis_client.get(lock_key(two.session_id)) == two.token.encode()
            return time.monotonic() - start > 1.0

        wait_until(both_held_past_three_ttls, timeout=5, what="both leases renewed")
        threads.add(short._keeper.thread)
    assert len(threads) == 1 and None not in threads
    assert not redis_client.exists(lock_key(one.session_id), lock_key(two.session_id))


def test_a_lost_lease_is_no_longer_renewed(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    short = StateStore(redis_client, lock_ttl_ms=300)
    short.create(rich_state())
    keeper = short._keeper
    with short.locked(SID) as lease:
        redis_client.delete(lock_key(SID))  # as if the lease had expired meanwhile
        newer = short.acquire(SID)
        wait_until(lambda: not keeper.holds(lease), timeout=5, what="the lost lease dropped")
        with pytest.raises(StaleFence):
            short.write(lease, StateChanges.of({"warmup_periods": 4}))
    assert "was lost" in caplog.text
    assert redis_client.get(lock_key(SID)) == newer.token.encode(), "the newer lease is kept"


def test_a_keeper_thread_ends_when_idle_and_a_forked_child_starts_afresh(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease_keeper, "IDLE_EXIT_S", 0.2)
    short = StateStore(redis_client, lock_ttl_ms=300)
    short.create(rich_state())
    keeper = short._keeper
    with short.locked(SID):
        thread = keeper.thread
        assert thread is not None and thread.is_alive()
    thread.join(timeout=5)
    assert not thread.is_alive() and keeper.thread is None
    lease = short.acquire(SID)
    keeper.hold(lease)
    parent = keeper.thread
    lease_keeper._forget_after_fork()  # what a forked child runs: the parent's leases are not its
    assert not keeper.holds(lease) and keeper.thread is None
    keeper.hold(lease)
    assert keeper.thread is not None and keeper.thread is not parent, "a thread of its own"
    keeper.drop(lease)
    short.release(lease)


def test_an_unreachable_redis_is_service_unavailable() -> None:
    client = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    store = StateStore(client, lock_ttl_ms=1_000)
    with pytest.raises(ServiceUnavailable):
        store.load(SID)
    with pytest.raises(ServiceUnavailable):
        store.acquire(SID)
