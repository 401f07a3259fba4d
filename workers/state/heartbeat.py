"""Keeping a short lease while a body of work runs: ``renewing`` calls ``renew`` from a
thread every ``every_s`` until the body ends or ``renew`` answers False (the lease is
someone else's now). A renewal that fails on Redis is tried again at the next beat; whoever
relies on the lease checks it where it matters (a lapsed lease is never taken as held)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis


@contextmanager
def renewing(renew: Callable[[], bool], every_s: float, name: str) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                if not renew():
                    return
            except redis.RedisError:
                continue

    thread = threading.Thread(target=beat, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
