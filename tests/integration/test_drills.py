"""``tradefleet drill --short``: the fleet on hosts of its own (network namespaces), the short
form of the drills, each judged against the undisturbed reference; and its teardown on Ctrl-C.

The full set is ``make drill``; this is the form the suite runs (three drills on 30 s of
replay). It needs root (network namespaces), as the machine this project runs its CI on has.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit.cli import REPO, cli_env, run_cli
from tests.kit.wait import wait_until
from workers.tools.drill.drills import SHORT_DRILLS
from workers.tools.drill.net import NS_PREFIX, OWNER_DIR, run_is_live

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

DRILL_TIMEOUT_S = 900


def drill_env(tmp_path: Path) -> dict[str, str]:
    """Only the data folder matters: a drill brings its own Redis, PostgreSQL and broker."""
    env = cli_env("redis://127.0.0.1:1/0", "sqlite:///unused.db", "redis://127.0.0.1:1/1")
    env["TRADEFLEET_DATA_DIR"] = str(tmp_path)
    return env


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _run_of(namespace: str) -> str:
    return namespace.rsplit("-", 1)[0]


def owned_by(pid: int) -> set[str]:
    """The namespaces of the drill run that process ``pid`` built (its owner file names it):
    other tests build hosts of their own meanwhile, the suite running in parallel."""
    runs = set()
    for owner in OWNER_DIR.glob("*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(owner.read_text().split()[0]) == pid:
                runs.add(owner.name)
    return {ns for ns in namespaces() if _run_of(ns) in runs}


def left_behind(before: set[str]) -> set[str]:
    """New namespaces of runs whose builder is gone: what a drill that did not tear down
    leaves (those of other tests' live runs are theirs, and go with them)."""
    return {
        ns
        for ns in namespaces() - before
        if ns.startswith(NS_PREFIX) and not run_is_live(_run_of(ns))
    }


def test_the_short_drills_lose_nothing_and_match_the_reference(tmp_path: Path) -> None:
    before = namespaces()
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli.main", "drill", "--short", "--json"],
        cwd=REPO,
        env=drill_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=DRILL_TIMEOUT_S,
        check=False,
    )
    report = f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, report
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    reference = figures["reference"]
    assert reference["fills"] >= 10, report  # the sessions trade: there is something to compare
    assert [d["name"] for d in figures["drills"]] == list(SHORT_DRILLS)
    for drill in figures["drills"]:
        assert drill["faults"] >= 1, drill
        assert drill["fills"] == reference["fills"], drill
        for key in (
            "ticks_lost",
            "orders_duplicated",
            "position_mismatches",
            "fills_differing",
            "orders_unmatched",
        ):
            assert drill[key] == 0, (key, drill)
        assert drill["passed"] is True
    assert "tradefleet drills" in proc.stdout  # the table
    assert left_behind(before) == set()  # everything torn down


def test_ctrl_c_tears_every_host_down(tmp_path: Path) -> None:
    """Also when the drill was started with SIGINT ignored (as a non-interactive shell starts a
    background job, and everything under it inherits): its Ctrl-C still tears it down."""
    before = namespaces()
    drill = [sys.executable, "-m", "workers.cli.main", "drill", "--short", "partition"]
    proc = subprocess.Popen(
        ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *drill],  # SIGINT ignored, through exec
        cwd=REPO,
        env=drill_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        mine = wait_until(lambda: owned_by(proc.pid), timeout=60, what="the drill's hosts to exist")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    assert mine & namespaces() == set()
    assert left_behind(before) == set()


def test_an_unknown_drill_is_one_line() -> None:
    env = cli_env("redis://127.0.0.1:1/0", "sqlite:///unused.db", "redis://127.0.0.1:1/1")
    run_cli(env, "drill", "no-such-drill").refused("unknown drill no-such-drill", "partition")
