"""Where a benchmark run's CPU went: redis-server, the tick workers, the orders worker, the feed.

Each child of the benchmark leads its own session (``ChildProcesses`` starts them so), so a
worker's CPU is the sum over the processes of its session: the Celery main process and its
pool. Read from ``/proc`` (Linux); elsewhere the children read 0 and ``known`` is False.
Redis reports its own time (``INFO cpu``); the feed is this process (it publishes the ticks).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

_PROC = Path("/proc")
WORKER_GROUPS = ("ticks", "orders")
"""The benchmark's worker children, by their ``ChildProcesses`` name."""


@dataclass(frozen=True, slots=True)
class CpuReading:
    """CPU seconds used so far by each part, and the wall clock when read."""

    wall_s: float
    redis_s: float
    feed_s: float
    workers_s: Mapping[str, float]
    known: bool


@dataclass(frozen=True, slots=True)
class CpuSpent:
    """CPU seconds each part used between two readings."""

    wall_s: float
    redis_s: float
    feed_s: float
    ticks_s: float
    orders_s: float
    known: bool

    @classmethod
    def between(cls, first: CpuReading, last: CpuReading) -> CpuSpent:
        def worker(name: str) -> float:
            return max(0.0, last.workers_s.get(name, 0.0) - first.workers_s.get(name, 0.0))

        return cls(
            wall_s=last.wall_s - first.wall_s,
            redis_s=last.redis_s - first.redis_s,
            feed_s=last.feed_s - first.feed_s,
            ticks_s=worker("ticks"),
            orders_s=worker("orders"),
            known=first.known and last.known,
        )

    @property
    def total_s(self) -> float:
        return self.redis_s + self.feed_s + self.ticks_s + self.orders_s

    def cores(self) -> float:
        """Cores kept busy on average over the run."""
        return self.total_s / self.wall_s if self.wall_s > 0 else 0.0

    def parts(self) -> dict[str, float]:
        """CPU seconds by part, in the order a report shows them."""
        return {
            "redis": self.redis_s,
            "tick workers": self.ticks_s,
            "feed": self.feed_s,
            "orders worker": self.orders_s,
        }


def read_cpu(client: redis.Redis, leaders: Mapping[str, int]) -> CpuReading:
    """A reading now; ``leaders``: worker name -> pid of the process leading its session."""
    info: Mapping[str, Any] = client.info("cpu")  # type: ignore[assignment]
    redis_s = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    by_session = _cpu_by_session()
    workers = {name: by_session.get(pid, 0.0) for name, pid in leaders.items()}
    return CpuReading(
        wall_s=time.monotonic(),
        redis_s=redis_s,
        feed_s=time.process_time(),
        workers_s=workers,
        known=bool(by_session),
    )


def _cpu_by_session() -> dict[int, float]:
    """CPU seconds (user + system) of the live processes, with that of the children they
    waited for (a pool process replaced during a run keeps counting), summed per session."""
    if not _PROC.is_dir():
        return {}
    tick = float(os.sysconf("SC_CLK_TCK"))
    out: dict[int, float] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended meanwhile
        # The command name (field 2) may hold spaces: fields are counted after its ")".
        fields = raw[raw.rindex(")") + 2 :].split()
        session, used = int(fields[3]), sum(int(n) for n in fields[11:15])
        out[session] = out.get(session, 0.0) + used / tick
    return out
