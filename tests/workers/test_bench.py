"""Smoke test of ``tradefleet bench``: a reduced run end to end (its own private redis-server,
SQLite file and real Celery workers), checking the figures it prints, never their speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workers.ticks.pipelines import execute, queue_script

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "ticks_per_s",
    "baseline_ticks_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_10k_p99_ms",
    "sessions",
    "workers",
}


@pytest.mark.integration
def test_reduced_bench_prints_every_figure_as_its_last_line() -> None:
    argv = [
        sys.executable,
        "-m",
        "workers.cli.bench_cmd",
        "--json",
        "--sessions=4",
        "--workers=1",
        "--seconds=1",
        "--rate=200",
        "--big-sessions=8",
        "--big-rate=400",
        "--ticks=4000",
    ]
    done = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert set(figures) == KEYS
    assert figures["sessions"] == 4
    assert figures["workers"] == 1
    for key in KEYS - {"sessions", "workers"}:
        assert isinstance(figures[key], float | int), key
        assert figures[key] > 0, key
    assert figures["latency_p50_ms"] <= figures["latency_p99_ms"]
    assert any("flat out: 4,000 ticks" in line for line in lines), done.stdout
    assert any("tradefleet tick path" in line for line in lines), done.stdout


@pytest.mark.integration
def test_pipelined_scripts_survive_a_flushed_script_cache(redis_client) -> None:
    """The tick path queues scripts as bare EVALSHA (no SCRIPT EXISTS round trip); after Redis
    lost its scripts the refused calls are sent again once, and nothing runs twice."""
    script = redis_client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    redis_client.script_flush()
    with redis_client.pipeline(transaction=False) as pipe:
        queue_script(pipe, script, ["n"], [1])
        pipe.incrby("n", 10)
        queue_script(pipe, script, ["n"], [100])
        replies = execute(pipe, [script])
    assert replies == [11, 10, 111]
    assert int(redis_client.get("n")) == 111
