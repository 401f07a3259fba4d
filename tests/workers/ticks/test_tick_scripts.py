"""The tick path's claim, begin and end scripts and its round-wide history reads, on a private
Redis: a claim takes a few due sessions whole, shares a backlog among the drainers and wakes
sleeping drainers for what it leaves; the end script's write is fenced (a stale token writes
nothing), atomic with the cursor, and re-readies the session only when its stream holds entries
past the new cursor."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis

from models.codec import (
    candles_key,
    encode_candle,
    fence_key,
    lock_key,
    lock_wanted_key,
    state_key,
)
from trading.market import Candle
from workers.ticks import scripts
from workers.ticks.keys import (
    AWAKE_KEY,
    BACKLOG_KEY,
    DRAINERS_KEY,
    READY_KEY,
    SLEEPERS_KEY,
    WAKE_KEY,
    stream_key,
)
from workers.ticks.lazy_fields import RoundHistory

pytestmark = pytest.mark.integration

SID = "tick-scripts-1"
CONTRACT = "ESZ13"


def _state(client: redis.Redis, sid: str = SID) -> None:
    client.hset(
        state_key(sid),
        mapping={"_fence": "0", "_cursor": "0-0", "candle_key": f'"{CONTRACT}:1m"', "x": "old"},
    )
    client.set(fence_key(sid), 0)


def _begin(client: redis.Redis, token: str, sid: str = SID, count: int = 100) -> list:
    """``count``: the begin's ``inline`` (fewer new ticks than that come back with it)."""
    script = client.register_script(scripts.BEGIN_SESSION)
    keys = [lock_key(sid), fence_key(sid), state_key(sid), READY_KEY, lock_wanted_key(sid)]
    return script(keys=keys, args=[token, 10_000, count, sid])


def _end(client: redis.Redis, token: str, fence: int, cursor: str, candles: list[str]) -> int:
    script = client.register_script(scripts.END_SESSION)
    keys = [
        state_key(SID),
        candles_key(SID),
        fence_key(SID),
        lock_key(SID),
        stream_key(CONTRACT),
        READY_KEY,
    ]
    args = [token, fence, cursor, SID, 123, 3, len(candles), *candles, "x", "new"]
    return int(script(keys=keys, args=args))


def _claim(client: redis.Redis, now: int, drainers: int, count: int, min_share: int) -> list[str]:
    """Drainer d0 claims; the others, d1..., sleep on the wake list."""
    client.zadd(DRAINERS_KEY, {f"d{n}": now + 30_000 for n in range(drainers)})
    if drainers > 1:
        client.zadd(SLEEPERS_KEY, {f"d{n}": now + 1_000 for n in range(1, drainers)})
    script = client.register_script(scripts.CLAIM)
    keys = [READY_KEY, DRAINERS_KEY, BACKLOG_KEY, WAKE_KEY, AWAKE_KEY, SLEEPERS_KEY]
    claimed = script(keys=keys, args=[now, 10_000, count, min_share, 50, "d0", 200])
    assert client.zscore(AWAKE_KEY, "d0") == now + 200, "the claiming drainer is awake"
    return [raw.decode() for raw in claimed]


@pytest.mark.parametrize(
    ("due", "drainers", "min_share", "backlog", "claimed", "woken"),
    [
        (10, 3, 32, "", 10, 0),  # a few: all of them, not a third each; nothing left to wake for
        (60, 3, 32, "", 32, 2),  # a third would be 20: at least the minimum; the others woken
        (300, 3, 32, "", 100, 2),  # many: this drainer's share
        (1_000, 3, 32, "", 128, 2),  # never more than the batch
        (60, 3, 1, "", 20, 2),  # minimum 1: the share alone
        (60, 1, 32, "", 60, 0),
        (10, 3, 32, "key", 4, 2),  # a drainer's round read a backlog: the share alone
        (10, 3, 32, "waited", 4, 2),  # a session due for 60 ms: a backlog too
    ],
)
def test_a_claim_takes_a_few_due_sessions_whole_and_shares_a_backlog(
    redis_client: redis.Redis,
    due: int,
    drainers: int,
    min_share: int,
    backlog: str,
    claimed: int,
    woken: int,
) -> None:
    now = 1_000_000
    # due for about a millisecond each, the first one the longest
    ready = {f"s{n:04d}": now - 1 + n / (10 * due) for n in range(due)}
    if backlog == "waited":
        ready["s0000"] = now - 60
    if backlog == "key":
        redis_client.set(BACKLOG_KEY, "1", px=100)
    redis_client.zadd(READY_KEY, {**ready, "not-due": now + 1})
    got = _claim(redis_client, now, drainers, count=128, min_share=min_share)
    assert got == sorted(ready)[:claimed], "the longest waiting first"
    scores = {m.decode(): s for m, s in redis_client.zrange(READY_KEY, 0, -1, withscores=True)}
    assert {sid for sid, score in scores.items() if score == now + 10_000} == set(got)
    assert scores["not-due"] == now + 1
    assert redis_client.llen(WAKE_KEY) == woken, "a token for each sleeper, if sessions are left"
    again = _claim(redis_client, now, drainers, count=128, min_share=min_share)
    assert set(again).isdisjoint(got), "a claimed session is not claimed again"
    assert redis_client.llen(WAKE_KEY) <= drainers - 1, "never more tokens than sleepers"
    assert woken == 0 or 0 < redis_client.pttl(WAKE_KEY) <= 2_000, "tokens nobody takes expire"


def test_begin_takes_the_lease_and_reads_fields_and_new_ticks(redis_client: redis.Redis) -> None:
    _state(redis_client)
    first = redis_client.xadd(stream_key(CONTRACT), {"t": "1", "p": "1", "s": "1"})
    status, fence, values, entries, stream = _begin(redis_client, "a")
    assert (status, fence, stream) == (1, 1, stream_key(CONTRACT).encode())
    assert values[:2] == [b"0-0", f'"{CONTRACT}:1m"'.encode()]
    assert len(values) == 2
    assert [entry_id for entry_id, _ in entries] == [first]
    assert _begin(redis_client, "b") == [0]
    assert redis_client.get(lock_key(SID)) == b"a"


def test_begin_leaves_a_wanted_lock_to_its_waiter(redis_client: redis.Redis) -> None:
    """A free lock another worker waits for (``lock wanted``) is not taken: busy."""
    _state(redis_client)
    redis_client.xadd(stream_key(CONTRACT), {"t": "1", "p": "1", "s": "1"})
    redis_client.set(lock_wanted_key(SID), "1", px=1_000)
    assert _begin(redis_client, "a") == [0]
    assert not redis_client.exists(lock_key(SID))
    redis_client.delete(lock_wanted_key(SID))
    assert _begin(redis_client, "a")[0] == 1


@pytest.mark.parametrize("new", [1, 2, 3, 4, 5, 9])
def test_begin_returns_a_few_new_ticks_in_order_and_leaves_more_to_a_plain_read(
    redis_client: redis.Redis, new: int
) -> None:
    """Fewer new ticks than ``inline`` come back with the begin, oldest first; with more, none
    does (false): the drainer reads them with a plain XRANGE from the cursor it got."""
    _state(redis_client)
    stream = stream_key(CONTRACT)
    ids = [redis_client.xadd(stream, {"t": str(i), "p": "1", "s": "1"}) for i in range(1, 11)]
    cursor = ids[len(ids) - new - 1]
    redis_client.hset(state_key(SID), "_cursor", cursor)
    status, _, values, entries, _ = _begin(redis_client, "a", count=4)
    assert status == 1 and values[0] == cursor
    if new >= 4:
        assert entries is None
        return
    assert [entry_id for entry_id, _ in entries] == ids[len(ids) - new :]
    assert [dict(zip(v[::2], v[1::2], strict=True))[b"t"] for _, v in entries] == [
        str(i).encode() for i in range(11 - new, 11)
    ]


def test_begin_drops_an_unknown_session_from_the_ready_set(redis_client: redis.Redis) -> None:
    redis_client.zadd(READY_KEY, {SID: 1})
    assert _begin(redis_client, "a") == [-1]
    assert redis_client.zscore(READY_KEY, SID) is None
    assert not redis_client.exists(lock_key(SID))


def test_end_writes_fields_cursor_and_candles_at_once_and_releases(
    redis_client: redis.Redis,
) -> None:
    _state(redis_client)
    entry = redis_client.xadd(stream_key(CONTRACT), {"t": "1", "p": "1", "s": "1"}).decode()
    redis_client.zadd(READY_KEY, {SID: 1})
    fence = _begin(redis_client, "a")[1]
    assert _end(redis_client, "a", fence, entry, ["c1", "c2", "c3", "c4"]) == 1
    assert redis_client.hmget(state_key(SID), "x", "_cursor", "_fence") == [
        b"new",
        entry.encode(),
        str(fence).encode(),
    ]
    assert redis_client.lrange(candles_key(SID), 0, -1) == [b"c2", b"c3", b"c4"]
    assert not redis_client.exists(lock_key(SID))
    assert redis_client.zscore(READY_KEY, SID) is None


def test_end_readies_the_session_again_when_ticks_arrived_meanwhile(
    redis_client: redis.Redis,
) -> None:
    _state(redis_client)
    entry = redis_client.xadd(stream_key(CONTRACT), {"t": "1", "p": "1", "s": "1"}).decode()
    fence = _begin(redis_client, "a")[1]
    redis_client.xadd(stream_key(CONTRACT), {"t": "2", "p": "1", "s": "1"})
    assert _end(redis_client, "a", fence, entry, []) == 2
    assert redis_client.zscore(READY_KEY, SID) == 123
    assert redis_client.llen(candles_key(SID)) == 0


def test_a_stale_fence_writes_nothing(redis_client: redis.Redis) -> None:
    _state(redis_client)
    entry = redis_client.xadd(stream_key(CONTRACT), {"t": "1", "p": "1", "s": "1"}).decode()
    stale = _begin(redis_client, "a")[1]
    redis_client.delete(lock_key(SID))
    newer = _begin(redis_client, "b")[1]
    assert newer > stale
    assert _end(redis_client, "a", stale, entry, ["c1"]) == -2
    assert redis_client.hmget(state_key(SID), "x", "_cursor") == [b"old", b"0-0"]
    assert redis_client.llen(candles_key(SID)) == 0
    assert redis_client.get(lock_key(SID)) == b"b"
    assert _end(redis_client, "b", newer, entry, []) == 1
    redis_client.set(fence_key(SID), stale)
    assert _end(redis_client, "a", stale, entry, []) == -2


def test_end_of_an_unknown_session_is_refused(redis_client: redis.Redis) -> None:
    assert _end(redis_client, "a", 1, "0-0", ["c1"]) == -1
    assert not redis_client.exists(state_key(SID), candles_key(SID))


def _candle(minute: int) -> Candle:
    price = Decimal(minute)
    start = datetime(2013, 10, 7, 14, minute, tzinfo=UTC)
    return Candle(start, price, price, price, price, 1)


def test_round_history_reads_later_steps_with_the_first(redis_client: redis.Redis) -> None:
    keys = [candles_key(f"h{i}") for i in range(3)]
    for key in keys:
        redis_client.rpush(key, *[encode_candle(_candle(n)) for n in range(5)])
    history = RoundHistory(redis_client)
    readers = [history.reader(key) for key in keys]
    assert readers[0](2) == [_candle(3), _candle(4)]
    for key in keys:
        redis_client.delete(key)
    assert readers[1](1) == [_candle(4)], "read with the first step's"
    assert readers[2](3) == [], "more than were read: its own read"
