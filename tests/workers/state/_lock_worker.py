"""A separate process that uses the state store's lock, for tests/workers/state/test_locking.py.

Usage: python _lock_worker.py REDIS_URL SESSION_ID MODE NAME [COUNT]

Modes (every report goes to Redis keys under ``test:{SESSION_ID}:``):
- ``contend``: COUNT times take the lock, bump an "inside" counter, record the highest value
  seen, leave; a ``LockBusy`` attempt is counted and retried.
- ``increment``: COUNT times acquire -> read warmup_periods -> fenced write of +1 and release,
  retrying on ``LockBusy`` and ``StaleFence``.
- ``stale``: hold the lock (renewed in the background) with a 600 ms TTL, report ``ready``,
  wait for ``go``, then try one write; report ``written`` or ``stale``.
"""

from __future__ import annotations

import sys
import time

import redis

from trading.exceptions import LockBusy, StaleFence
from workers.state.store import StateChanges, StateStore

MAX_SCRIPT = """
local v = redis.call('INCR', KEYS[1])
local m = tonumber(redis.call('GET', KEYS[2]) or '0')
if v > m then redis.call('SET', KEYS[2], v) end
return v
"""
DEADLINE_S = 60.0
STALE_TTL_MS = 600


def report_key(sid: str, name: str) -> str:
    return f"test:{{{sid}}}:{name}"


def start_together(client: redis.Redis, sid: str, parties: int) -> None:
    """Wait until ``parties`` workers have arrived, so that they really run at once."""
    client.incr(report_key(sid, "arrived"))
    deadline = time.monotonic() + DEADLINE_S
    while int(client.get(report_key(sid, "arrived")) or 0) < parties:
        if time.monotonic() > deadline:
            raise SystemExit("partner never arrived")
        time.sleep(0.005)


def contend(client: redis.Redis, store: StateStore, sid: str, name: str, count: int) -> None:
    enter = client.register_script(MAX_SCRIPT)
    inside, max_inside = report_key(sid, "inside"), report_key(sid, "max_inside")
    start_together(client, sid, 2)
    done = 0
    while done < count:
        try:
            lease = store.acquire(sid)
        except LockBusy:
            client.incr(report_key(sid, f"busy:{name}"))
            continue
        enter(keys=[inside, max_inside])
        client.rpush(report_key(sid, "log"), f"{name}:{done}")
        client.decr(inside)
        assert store.release(lease), "lease lost while inside"
        done += 1


def increment(store: StateStore, sid: str, count: int) -> None:
    done = 0
    while done < count:
        try:
            lease = store.acquire(sid, wait_s=DEADLINE_S, poll_s=0.001)
            current = lease.value("warmup_periods")
            store.write(lease, StateChanges.of({"warmup_periods": current + 1}), release=True)
        except (LockBusy, StaleFence):
            continue
        done += 1


def stale(client: redis.Redis, store: StateStore, sid: str) -> None:
    with store.locked(sid) as lease:
        client.set(report_key(sid, "fence"), lease.fence)
        client.set(report_key(sid, "ready"), 1)
        deadline = time.monotonic() + DEADLINE_S
        while not client.exists(report_key(sid, "go")):
            if time.monotonic() > deadline:
                raise SystemExit("never told to go")
            time.sleep(0.005)
        try:
            store.write(lease, StateChanges.of({"candle_key": "written-by-stale-worker"}))
        except StaleFence:
            client.set(report_key(sid, "result"), "stale")
        else:
            client.set(report_key(sid, "result"), "written")


def main(argv: list[str]) -> None:
    url, sid, mode, name = argv[1:5]
    count = int(argv[5]) if len(argv) > 5 else 0
    client = redis.Redis.from_url(url)
    ttl_ms = STALE_TTL_MS if mode == "stale" else 5_000
    store = StateStore(client, ttl_ms)
    if mode == "contend":
        contend(client, store, sid, name, count)
    elif mode == "increment":
        start_together(client, sid, 2)
        increment(store, sid, count)
    elif mode == "stale":
        stale(client, store, sid)
    else:
        raise SystemExit(f"unknown mode {mode}")
    client.close()


if __name__ == "__main__":
    main(sys.argv)
