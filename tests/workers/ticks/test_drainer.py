"""The drainer in this process over real sessions (SQLite, a private Redis): a begin resent
after a script flush reads the state again, a round leaves no garbage, a backlog is marked, the
quiet steps are written before the deciding ones send, a step is counted once, a deciding step
holds its session again before its rows (state lost, overtaken, lease run out), a lock another
worker waits for is left to it, and an idle drainer sleeps on the wake list until a publish
wakes it."""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.codec import candles_key, fence_key, lock_key, lock_wanted_key, state_key
from models.meta import PROGRESS_FIELD
from models.tables import OrderRow
from tests.kit.metrics import counted
from tests.kit.redis import paper_url
from tests.kit.wait import wait_until
from trading.market import Candle
from workers.db.engines import dispose_engines, engine_for, upgrade
from workers.dispatch import names
from workers.dispatch.sending import one_by_one
from workers.metrics.catalog import (
    CANDLES_CLOSED,
    ORDERS,
    TICK_LAG,
    TICKS_PROCESSED,
    TICKS_REJECTED,
)
from workers.sessions.create import NewSession, create_session
from workers.settings import DatabaseSettings, PathSettings, RedisSettings, Settings
from workers.state.store import LOCK_WANTED_MS, StateStore
from workers.ticks import drain
from workers.ticks.drain import TickDrainer
from workers.ticks.keys import (
    BACKLOG_KEY,
    DRAINERS_KEY,
    WAKE_KEY,
    stream_key,
)
from workers.ticks.lazy_fields import RoundHistory
from workers.ticks.publisher import TickPublisher

pytestmark = pytest.mark.integration

CONTRACT = "ESZ13"


def _sessions(
    redis_url: str,
    sqlite_url: str,
    tmp_path: Path,
    name: str,
    count: int,
    contract: str = CONTRACT,
) -> tuple[Settings, list[str]]:
    settings = Settings(
        redis=RedisSettings(url=redis_url, paper_broker_url=paper_url(redis_url)),
        database=DatabaseSettings(url=sqlite_url),
        paths=PathSettings(data_dir=tmp_path),
    )
    upgrade(settings.sqlalchemy_url)
    request = NewSession(
        name=name,
        account=name,
        product="ES",
        contract=contract,
        strategy="sma_cross",
        strategy_args={"fast": "2", "slow": "3"},
        feed="synthetic",
    )
    sids = [
        create_session(
            settings, replace(request, name=f"{name}-{n}", account=f"{name}-{n}")
        ).session.id
        for n in range(count)
    ]
    return settings, sids


def test_a_drainer_reads_the_state_again_when_its_begin_script_was_resent(
    redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """After Redis lost its scripts, the begin scripts go again after the HMGETs queued behind
    them: those read the state before the lease was taken, so the drainer reads it again."""
    settings, sids = _sessions(redis_url, sqlite_url, tmp_path, "resent", 2)
    client = redis.Redis.from_url(redis_url)
    try:
        drainer = TickDrainer(client, engine_for(settings.sqlalchemy_url), settings, _no_send)
        entry = client.xadd(stream_key(CONTRACT), {"t": "1700000000000", "p": "4000.25", "s": "1"})
        client.script_flush()
        client.config_resetstat()
        assert drainer.process_many(sids) == 2
        # per session: the resent begin script's own HMGET, the one queued behind it, and the
        # one read again under the lease
        assert client.info("commandstats")["cmdstat_hmget"]["calls"] == 3 * len(sids)
        for sid in sids:
            assert client.hget(state_key(sid), "_cursor") == entry
            partial = json.loads(client.hget(state_key(sid), "latest_partial_candle") or b"null")
            assert partial["close"] == "4000.25"
    finally:
        client.close()
        dispose_engines()


def test_a_round_leaves_no_reference_cycle_for_the_collector(
    redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """What a round builds is freed when it ends: garbage the collector must find would make
    its collections longer and more frequent in every drainer, on every round."""
    settings, sids = _sessions(redis_url, sqlite_url, tmp_path, "cycles", 3)
    client = redis.Redis.from_url(redis_url)
    try:
        drainer = TickDrainer(client, engine_for(settings.sqlalchemy_url), settings, _no_send)
        client.xadd(stream_key(CONTRACT), {"t": "1700000000000", "p": "4000.25", "s": "1"})
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            assert drainer.process_many(sids) == 3
            gc.collect()
            left = sorted({type(o).__module__ for o in gc.garbage})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        assert [module for module in left if module.startswith("workers.")] == []
    finally:
        client.close()
        dispose_engines()


def test_a_lock_another_worker_waits_for_is_left_to_it(
    redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """A worker that waits for a session's lock (a fill to apply) marks it wanted while it is
    busy; the drainer then leaves the session (its ticks stay in the stream) until the waiter
    took and released the lock, and steps it after. A try that will not wait marks nothing."""
    settings, sids = _sessions(redis_url, sqlite_url, tmp_path, "wanted", 1)
    sid = sids[0]
    client = redis.Redis.from_url(redis_url)
    try:
        store = StateStore(client, settings.state.lock_ttl_ms)
        drainer = TickDrainer(client, engine_for(settings.sqlalchemy_url), settings, _no_send)
        entry = client.xadd(stream_key(CONTRACT), {"t": "1700000000000", "p": "4000.25", "s": "1"})
        holder = store.acquire(sid)
        assert store.try_acquire(sid) is None
        assert client.exists(lock_wanted_key(sid)) == 0, "a single try marks nothing"
        assert store.try_acquire(sid, will_wait=True) is None
        assert 0 < client.pttl(lock_wanted_key(sid)) <= LOCK_WANTED_MS
        assert store.release(holder)
        cursor = client.hget(state_key(sid), "_cursor")
        assert drainer.process(sid) == 0, "the drainer left the wanted lock to its waiter"
        assert client.hget(state_key(sid), "_cursor") == cursor != entry
        waiter = store.try_acquire(sid, will_wait=True)
        assert waiter is not None
        assert client.exists(lock_wanted_key(sid)) == 0, "taking the lock clears the mark"
        assert store.release(waiter)
        assert drainer.process(sid) == 1
        assert client.hget(state_key(sid), "_cursor") == entry
    finally:
        client.close()
        dispose_engines()


def test_a_backlog_is_read_with_plain_reads_a_batch_at_a_time(
    redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """A step with fewer than ``INLINE_ENTRIES`` new ticks gets them with its begin script;
    with more, with a plain XRANGE (one per such step, in one round trip), at most a batch:
    the rest in the next step. Either way every tick once, in order."""
    settings, (behind, near) = _sessions(redis_url, sqlite_url, tmp_path, "plain", 2)
    settings = settings.model_copy(
        update={"ticks": settings.ticks.model_copy(update={"batch": 25})}
    )
    client = redis.Redis.from_url(redis_url)
    try:
        drainer = TickDrainer(client, engine_for(settings.sqlalchemy_url), settings, _no_send)
        ids = [
            client.xadd(stream_key(CONTRACT), {"t": str(1_700_000_040_000 + n), "p": "1", "s": "1"})
            for n in range(40)
        ]
        client.hset(state_key(near), "_cursor", ids[34])
        client.config_resetstat()
        assert drainer.process_many([behind, near]) == 25 + 5
        assert client.info("commandstats")["cmdstat_xrange"]["calls"] == 1, "behind's only"
        assert client.hget(state_key(behind), "_cursor") == ids[24]
        assert client.hget(state_key(near), "_cursor") == ids[39]
        assert drainer.process_many([behind, near]) == 15, "behind's rest, near has none"
        assert client.info("commandstats")["cmdstat_xrange"]["calls"] == 1, "15 came inline"
        assert client.hget(state_key(behind), "_cursor") == ids[39]
        progress = json.loads(client.hget(state_key(behind), PROGRESS_FIELD) or b"{}")
        assert progress["ticks_processed"] == 40
    finally:
        client.close()
        dispose_engines()


@pytest.mark.parametrize(("ticks", "marked"), [(1, False), (15, False), (16, True)])
def test_a_round_that_read_a_backlog_marks_it_for_the_claims(
    redis_url: str,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ticks: int,
    marked: bool,
) -> None:
    """A round whose steps read 16 ticks each or more sets the backlog key for a moment (the
    drainers' claims then share the due sessions, ``scripts.CLAIM``); lighter rounds do not."""
    monkeypatch.setattr(drain, "BACKLOG_MARK_MS", 60_000)  # a moment this test cannot miss
    settings, sids = _sessions(redis_url, sqlite_url, tmp_path, "backlog", 2)
    client = redis.Redis.from_url(redis_url)
    try:
        drainer = TickDrainer(client, engine_for(settings.sqlalchemy_url), settings, _no_send)
        for n in range(ticks):
            fields = {"t": str(1_700_000_040_000 + n), "p": "4000.25", "s": "1"}
            client.xadd(stream_key(CONTRACT), fields)  # type: ignore[arg-type]
        assert drainer.process_many(sids) == 2 * ticks
        ttl = client.pttl(BACKLOG_KEY)
        assert (0 < ttl <= 60_000) if marked else ttl == -2
    finally:
        client.close()
        dispose_engines()


def test_steps_that_decided_nothing_are_written_before_the_others_send(
    redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """In one round, a session whose step decides an order has its row written and its send
    queued before its state is written; a session whose step decided nothing is written
    first, without waiting for that row and send."""
    settings, (deciding,) = _sessions(redis_url, sqlite_url, tmp_path, "split", 1)
    _, (quiet,) = _sessions(redis_url, sqlite_url, tmp_path, "quiet", 1, contract="ESH14")
    client = redis.Redis.from_url(redis_url)
    minute = 1_700_000_040_000
    for n, price in enumerate(["100", "100", "100", "100", "110", "110"]):
        fields = {"t": str(minute + n * 60_000), "p": price, "s": "1"}
        client.xadd(stream_key(CONTRACT), fields)  # type: ignore[arg-type]
    quiet_entry = client.xadd(stream_key("ESH14"), {"t": str(minute), "p": "100", "s": "1"})
    seen: list[tuple[bytes | None, bytes | None]] = []

    def send(name: str, args: list[list[list[str]]], queue: str) -> None:
        ((order,),) = args
        assert order[0] == deciding
        seen.append(
            (
                client.hget(state_key(quiet), "_cursor"),
                client.hget(state_key(deciding), "_cursor"),
            )
        )

    try:
        drainer = TickDrainer(client, engine_for(settings.sqlalchemy_url), settings, send)
        assert drainer.process_many([deciding, quiet]) == 7
        assert seen == [(quiet_entry, b"0-0")], "the quiet step was written, the other was not"
        orders = json.loads(client.hget(state_key(deciding), "orders") or b"{}")
        assert [order["side"] for order in orders.values()] == ["buy"]
    finally:
        client.close()
        dispose_engines()


def test_a_step_is_counted_once_when_its_write_is_accepted(
    redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """What a step did (good ticks, bad ones by reason, candles closed, every entry's lag, the
    order rows it wrote) is counted with the drainer's next batch, and only once its fenced
    write is accepted: a step refused as stale counts nothing but the rows it wrote, and its
    re-run counts its ticks once and finds its rows written."""
    settings, (sid,) = _sessions(redis_url, sqlite_url, tmp_path, "counted", 1)
    client = redis.Redis.from_url(redis_url)
    minute = 1_700_000_040_000
    rows: list[dict[str, str]] = [
        {"t": str(minute + n * 60_000), "p": price, "s": "1"}
        for n, price in enumerate(["100", "100", "100", "100", "110", "110"])
    ]
    rows[2:2] = [{"t": str(minute + 90_000), "p": "-1", "s": "1"}]
    rows[4:4] = [{"t": str(minute), "p": "100", "s": "1"}, {"t": "soon", "p": "100", "s": "1"}]
    for fields in rows:
        client.xadd(stream_key(CONTRACT), fields)  # type: ignore[arg-type]
    sends: list[str] = []

    def send_after_a_newer_fence(name: str, args: list[list[list[str]]], queue: str) -> None:
        assert name == names.ORDERS_SEND_BATCH
        ((order,),) = args
        sends.append(order[1])
        if len(sends) == 1:
            client.incr(fence_key(sid))

    try:
        drainer = TickDrainer(
            client, engine_for(settings.sqlalchemy_url), settings, send_after_a_newer_fence
        )
        assert drainer.process_many([sid]) == 0
        assert counted(client, ORDERS) == {"created": 1}
        assert counted(client, TICKS_PROCESSED) == counted(client, TICK_LAG) == {}
        client.delete(lock_key(sid))  # the stale step's lease, as if it had run out
        assert drainer.process_many([sid]) == len(rows)
        assert len(sends) == 2 and sends[0] == sends[1]
        assert counted(client, ORDERS) == {"created": 1}
        assert counted(client, TICKS_PROCESSED) == {"": 6}
        rejected = {"bad_price": 1, "time_backwards": 1, "unparseable": 1}
        assert counted(client, TICKS_REJECTED) == rejected
        assert counted(client, CANDLES_CLOSED) == {"": 5}
        lag = counted(client, TICK_LAG)
        assert lag["count"] == len(rows)
        within_a_minute = TICK_LAG.buckets.index(60.0)
        assert lag[f"b{within_a_minute}"] == len(rows), "their stream ids are Redis' time: now"
        assert drainer.process_many([sid]) == 0
        assert counted(client, TICKS_PROCESSED) == {"": 6}
    finally:
        client.close()
        dispose_engines()


@pytest.mark.parametrize(
    ("meanwhile", "sent_names", "rows"),
    [
        ("lost", [names.RECOVER], 0),  # Redis restarted empty: no row, the recovery queued
        ("overtaken", [], 0),  # a newer holder: nothing written, it is theirs
        ("ran out", [names.ORDERS_SEND_BATCH], 1),  # lease expired, nobody took it: held again
    ],
)
def test_a_deciding_step_holds_its_session_again_before_its_rows(
    redis_url: str,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: str,
    sent_names: list[str],
    rows: int,
) -> None:
    """Between a deciding step's history read and its order rows: Redis restarted empty
    (test_feed_resume saw it: the history read found nothing, the strategy decided from that,
    and those orders became real), a newer holder took the session, or the lease ran out (a
    slow network: the netem drill's step was re-run by another drainer again and again, each
    time queueing every send again). Only a step still holding its fencing token writes rows,
    with its lease held again for the rows and sends."""
    settings, (sid,) = _sessions(redis_url, sqlite_url, tmp_path, "held", 1)
    client = redis.Redis.from_url(redis_url)
    minute = 1_700_000_040_000
    for n, price in enumerate(["100", "100", "100", "100", "110", "110"]):
        client.xadd(stream_key(CONTRACT), {"t": str(minute + n * 60_000), "p": price, "s": "1"})
    sent: list[str] = []
    reader = RoundHistory.reader

    def with_meanwhile(history: RoundHistory, key: str) -> Callable[[int], list[Candle]]:
        read = reader(history, key)

        def read_then(count: int) -> list[Candle]:
            if meanwhile == "lost":
                client.delete(state_key(sid), fence_key(sid), lock_key(sid), candles_key(sid))
            elif meanwhile == "overtaken":
                client.incr(fence_key(sid))
                client.set(lock_key(sid), "another drainer")
            else:
                client.delete(lock_key(sid))
            return read(count)

        return read_then

    monkeypatch.setattr(RoundHistory, "reader", with_meanwhile)
    try:
        drainer = TickDrainer(
            client,
            engine_for(settings.sqlalchemy_url),
            settings,
            lambda name, args, queue: sent.append(name),
        )
        drainer.process_many([sid])
        assert sent == sent_names
        with Session(engine_for(settings.sqlalchemy_url)) as db:
            assert db.scalar(select(func.count()).select_from(OrderRow)) == rows
        cursor = client.hget(state_key(sid), "_cursor")
        assert (cursor not in {None, b"0-0"}) == (meanwhile == "ran out"), cursor
        if meanwhile == "overtaken":
            assert client.get(lock_key(sid)) == b"another drainer", "theirs, left alone"
        else:
            assert client.exists(lock_key(sid)) == 0, "no lease left behind"
    finally:
        client.close()
        dispose_engines()


def _no_drain_task(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("a drainer is there: no drain task is started")


def _no_send(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("no order is decided on one tick")


def test_an_idle_drainer_sleeps_on_the_wake_list_and_a_publish_wakes_it(
    redis_url: str, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drainer with nothing to claim blocks on the wake list for its linger instead of
    polling: it costs next to no CPU and a handful of commands while idle, and a publish that
    makes its sessions ready wakes it at once, long before its linger ends."""
    monkeypatch.setattr(drain, "IDLE_LINGER_S", 20.0)
    settings, sids = _sessions(redis_url, sqlite_url, tmp_path, "idle", 2)
    client = redis.Redis.from_url(redis_url)
    done: list[tuple[drain.DrainReport, float]] = []

    def idle_drain() -> None:
        started = time.thread_time()
        drainer = TickDrainer(client, engine_for(settings.sqlalchemy_url), settings, _no_send)
        done.append((drainer.drain("d-idle", budget_s=60.0), time.thread_time() - started))

    def blocked() -> bool:
        return any(c["cmd"] == "blpop" for c in client.client_list())

    try:
        client.zadd(DRAINERS_KEY, {"d-idle": time.time() * 1000 + 60_000})
        client.config_resetstat()
        thread = threading.Thread(target=idle_drain, daemon=True)
        thread.start()
        wait_until(blocked, what="the idle drainer blocked on the wake list")
        feed = TickPublisher(
            client,
            one_by_one(_no_drain_task),  # one drainer is there: no drain task is started
            queue="ticks",
            max_drainers=1,
            stream_maxlen=1_000,
            drainer_grace_ms=60_000,
        )
        woke_at = time.monotonic()
        assert feed.publish_raw(
            CONTRACT, [("1700000000000", "4000.25", "1", "", "")]
        ).sessions_woken
        for sid in sids:
            wait_until(
                lambda sid=sid: client.hget(state_key(sid), "_cursor") != b"0-0",
                timeout=10.0,
                what=f"{sid} stepped",
            )
        assert time.monotonic() - woke_at < 10.0, "woken by the publish, not the 20 s linger"
        wait_until(blocked, what="the drainer idle again")
        # idle for a while, blocked: polling every millisecond would make hundreds of claims
        idle_until = time.monotonic() + 1.0
        wait_until(lambda: time.monotonic() > idle_until, what="a second of idling")
        claims = client.info("commandstats")["cmdstat_evalsha"]["calls"]
        assert claims < 20, f"{claims} script calls: the idle drainer polled"
        monkeypatch.setattr(drain, "IDLE_LINGER_S", 0.0)
        client.rpush(WAKE_KEY, "1")  # woken with its linger over: it stops
        wait_until(lambda: done, timeout=30.0, what="the drain task to finish")
        report, cpu_s = done[0]
        assert report.finished and report.ticks == 2
        assert cpu_s < 0.5, f"{cpu_s:.3f} s of CPU over seconds idle"
    finally:
        client.close()
        dispose_engines()
