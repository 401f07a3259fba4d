"""The benchmark's CPU accounting, read off real processes (``/proc``) and a real Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from workers.tools.bench.cpu import CpuSpent, read_cpu

BURN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_workers_cpu_is_the_sum_over_the_processes_of_its_session(
    redis_client: redis.Redis,
) -> None:
    """A leader and the child it starts both burn 0.4 s: the group's reading holds both, the
    child's still there once the leader has waited for it."""
    code = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {BURN!r}])\n"
        f"{BURN}"
        "child.wait()\n"
        "print('reaped', flush=True)\n"
        "sys.stdin.read()\n"
    )
    leader = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        first = read_cpu(redis_client, {"ticks": leader.pid})
        assert leader.stdout is not None
        assert leader.stdout.readline().strip() == "reaped"
        spent = CpuSpent.between(first, read_cpu(redis_client, {"ticks": leader.pid}))
        assert spent.known
        assert spent.ticks_s >= 0.75, spent  # the leader's 0.4 s and its child's 0.4 s
        assert spent.orders_s == 0.0
        assert spent.redis_s >= 0.0
        assert spent.total_s >= spent.ticks_s
        assert spent.wall_s > 0
    finally:
        leader.kill()
        leader.wait()
