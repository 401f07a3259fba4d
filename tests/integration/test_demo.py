"""The main job, end to end: ``tradefleet demo --json`` on a private Redis and SQLite file
replays the real ES and GC data through three sessions on the paper broker, rolls both ES
sessions from ESZ13 to ESH14, and ends with a summary in which every session traded, every
position is the broker's, and a report to open."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit.cli import REPO, cli_env
from tests.kit.redis import paper_url

pytestmark = pytest.mark.integration

DEMO_TIMEOUT_S = 300.0
USD = re.compile(r"-?\d+\.\d\d")


def test_the_demo_trades_every_session_and_agrees_with_the_broker(
    redis_url: str, tmp_path: Path
) -> None:
    env = cli_env(
        redis_url,
        f"sqlite:///{tmp_path / 'demo.db'}",
        paper_url(redis_url),
        data_dir=str(tmp_path),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli.main", "demo", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])

    sessions = summary["sessions"]
    assert sorted((s["product"], s["contract"]) for s in sessions) == [
        ("ES", "ESH14"),
        ("ES", "ESH14"),
        ("GC", "GCZ13"),
    ]
    for session in sessions:
        name = session["name"]
        assert session["ticks_processed"] > 0 and session["ticks_rejected"] == 0, name
        assert session["candles_closed"] > 0, name
        assert session["orders"] >= session["fills"] > 0, name
        assert session["position"] == session["broker_position"], name
        assert USD.fullmatch(session["realized_pnl"]), session["realized_pnl"]

    # the replay is deterministic, and the summary is taken once every fill is applied
    # (a stop the last ticks touched included): the same orders, fills and positions every run
    figures = {
        s["name"].split("-", 2)[2]: (s["orders"], s["fills"], s["position"]) for s in sessions
    }
    assert figures == {
        "es-sma": (317, 317, 1),
        "es-breakout": (204, 168, 0),
        "gc-breakout": (194, 175, -1),
    }

    es = {s["id"] for s in sessions if s["product"] == "ES"}
    assert {r["session_id"] for r in summary["rolls"]} == es
    for roll in summary["rolls"]:
        assert (roll["from"], roll["to"], roll["status"]) == ("ESZ13", "ESH14", "done"), roll
        # both one-lot sessions hold a position on the roll date (the replay is deterministic):
        # the roll closed and reopened it, not only switched a flat session
        assert abs(roll["quantity"]) == 1, roll

    report = Path(summary["report"])
    assert report.is_relative_to(tmp_path) and report.is_file()
    page = report.read_text()
    assert all(s["name"] in page for s in sessions)
