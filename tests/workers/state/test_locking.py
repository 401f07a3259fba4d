"""The session lock across real processes: mutual exclusion, fencing of a stalled holder, and
no lost updates. Workers are separate Python processes (``_lock_worker.py``) on the private
Redis; the test only polls with deadlines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from models.codec import decode_field, lock_key, state_key
from tests.kit.wait import wait_until
from tests.models.test_codec import sample_state
from trading.exceptions import LockBusy
from workers.state.store import StateChanges, StateStore

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("_lock_worker.py")
SID = "lock-test-1"


def report(sid: str, name: str) -> str:
    return f"test:{{{sid}}}:{name}"


def spawn(redis_url: str, mode: str, name: str, count: int = 0) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), redis_url, SID, mode, name, str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker failed ({proc.returncode}): {err.decode()[-2000:]}"


@pytest.fixture
def store(redis_client: redis.Redis) -> StateStore:
    store = StateStore(redis_client, lock_ttl_ms=5_000)
    store.create(sample_state(SID))
    return store


def test_two_processes_never_hold_the_lock_at_once(
    redis_url: str, redis_client: redis.Redis, store: StateStore
) -> None:
    procs = [spawn(redis_url, "contend", name, 200) for name in ("a", "b")]
    for proc in procs:
        finish(proc)
    entries = [e.decode() for e in redis_client.lrange(report(SID, "log"), 0, -1)]
    assert sorted(entries) == sorted(f"{n}:{i}" for n in ("a", "b") for i in range(200))
    assert int(redis_client.get(report(SID, "max_inside"))) == 1
    assert int(redis_client.get(report(SID, "inside"))) == 0
    busy = sum(int(redis_client.get(report(SID, f"busy:{n}")) or 0) for n in ("a", "b"))
    assert busy > 0, "the workers never contended, so exclusion was not exercised"
    assert not redis_client.exists(lock_key(SID))


def test_increments_under_the_lock_are_never_lost(
    redis_url: str, redis_client: redis.Redis, store: StateStore
) -> None:
    before = store.load(SID).warmup_periods
    procs = [spawn(redis_url, "increment", name, 500) for name in ("a", "b")]
    for proc in procs:
        finish(proc)
    assert store.load(SID).warmup_periods == before + 1000
    assert not redis_client.exists(lock_key(SID))


def _wait_ready(redis_client: redis.Redis, proc: subprocess.Popen[bytes]) -> int:
    def ready() -> bool:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        return bool(redis_client.exists(report(SID, "ready")))

    wait_until(ready, timeout=30, what="worker A holds the lock")
    return int(redis_client.get(report(SID, "fence")))


def test_a_stalled_holder_cannot_overwrite_newer_state(
    redis_url: str, redis_client: redis.Redis, store: StateStore
) -> None:
    proc = spawn(redis_url, "stale", "a")
    try:
        fence_a = _wait_ready(redis_client, proc)
        # A renews its 600 ms lease in the background: the lock outlives several TTLs.
        token = redis_client.get(lock_key(SID))
        start = time.monotonic()

        def held_for_three_ttls() -> bool:
            assert redis_client.get(lock_key(SID)) == token
            return time.monotonic() - start > 1.8

        wait_until(held_for_three_ttls, timeout=5, what="A's lease to be renewed")
        with pytest.raises(LockBusy):
            store.acquire(SID)

        os.kill(proc.pid, signal.SIGSTOP)
        wait_until(
            lambda: not redis_client.exists(lock_key(SID)), timeout=5, what="A's lease to expire"
        )
        lease_b = store.acquire(SID)
        assert lease_b.fence > fence_a
        store.write(lease_b, StateChanges.of({"candle_key": "X"}), release=True)

        redis_client.set(report(SID, "go"), 1)
        os.kill(proc.pid, signal.SIGCONT)
        finish(proc, timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
    assert redis_client.get(report(SID, "result")) == b"stale"
    assert store.load(SID).candle_key == "X"
    assert decode_field("warmup_periods", redis_client.hget(state_key(SID), "warmup_periods")) == 0
    assert int(redis_client.hget(state_key(SID), "_fence")) == lease_b.fence


def test_the_same_holder_writes_when_it_did_not_stall(
    redis_url: str, redis_client: redis.Redis, store: StateStore
) -> None:
    proc = spawn(redis_url, "stale", "a")
    _wait_ready(redis_client, proc)
    redis_client.set(report(SID, "go"), 1)
    finish(proc, timeout=30)
    assert redis_client.get(report(SID, "result")) == b"written"
    assert store.load(SID).candle_key == "written-by-stale-worker"
    assert not redis_client.exists(lock_key(SID))
