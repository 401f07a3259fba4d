"""Smoke test of ``tradefleet bench``: a reduced run end to end (its own private redis-server,
SQLite file and real Celery workers), checking the figures it prints, never their speed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.kit.cli import REPO

KEYS = {
    "ticks_per_s",
    "baseline_ticks_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_10k_p99_ms",
    "sessions",
    "workers",
    "end_to_end_ratio",
    "capacity_steps_per_s",
    "latency_p99_ms_at_50pct",
    "latency_p99_ms_at_80pct",
    "idle_cores",
    "cpu_us_per_step_2k",
    "cpu_us_per_step_10k",
    "cores_busy_10k",
    "cpu_ms_per_order",
    "orders_p99_ms",
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
        "--idle-seconds=1",
        "--capacity-rounds=2",
        "--order-sessions=10",
        "--order-share=0.5",
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert set(figures) == KEYS
    assert figures["sessions"] == 4
    assert figures["workers"] == 1
    for key in KEYS - {"sessions", "workers"}:
        assert isinstance(figures[key], float | int), key
        assert figures[key] > 0 or key == "idle_cores", key
    assert 0 <= figures["idle_cores"] < 2, "the idle run's cores busy, all processes"
    assert figures["latency_p50_ms"] <= figures["latency_p99_ms"]
    assert any("flat out: 4,000 ticks" in line for line in lines), done.stdout
    assert any("tradefleet tick path" in line for line in lines), done.stdout
    cpu_lines = [line for line in lines if line.strip().startswith("cpu: ")]
    assert len(cpu_lines) == 4, done.stdout  # one per latency run
    assert any("capacity" in line and "steps/s" in line for line in lines), done.stdout
    for line in cpu_lines:
        assert "us per step (redis " in line and "tick workers " in line, line
        assert "not readable" not in line, line
    assert any("5 orders filled" in line for line in lines), done.stdout
    assert any(
        line.strip().startswith("order cpu: ") and "orders worker " in line for line in lines
    ), done.stdout
