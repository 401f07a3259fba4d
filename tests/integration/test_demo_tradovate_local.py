"""The demo against a live broker: ``tradefleet demo --broker tradovate-local --json`` starts the
local Tradovate server and the user-sync listener, trades the real ES and GC data through three
sessions on broker ``tradovate`` (the adapter), rolls both ES sessions, and ends with every
session's position equal to the broker's: the summary's, and the server's own state read
independently of the adapter. The throwaway secrets it makes (read here from the server's own
environment while it runs) never appear on a command line or in a log."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.kit.cli import REPO, cli_env
from tests.kit.redis import paper_url

pytestmark = pytest.mark.integration

DEMO_TIMEOUT_S = 900.0
SECRET_VARS = (
    "TRADOVATE_LOCAL_PASSWORD",
    "TRADOVATE_LOCAL_SEC",
    "TRADOVATE_LOCAL_CONTROL_TOKEN",
)

DEMO = (sys.executable, "-m", "workers.cli.main", "demo")
SINCE = "2013-11-25"
"""A shorter run (ES from here to its roll; GC's three days): every session still trades."""


def _processes() -> list[tuple[int, str, dict[str, str]]]:
    """Every readable process: pid, command line, environment."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        env = dict(
            item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
        )
        out.append((int(entry.name), argv, env))
    return out


def _watch(proc: subprocess.Popen[str], data_dir: str) -> tuple[dict[str, str], list[str]]:
    """While the demo runs: the secrets in its server's environment (found by the demo's data
    dir) and every command line seen, sampled until the demo ends."""
    secrets: dict[str, str] = {}
    argvs: list[str] = []
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        for _, argv, env in _processes():
            argvs.append(argv)
            if (
                not secrets
                and env.get("TRADEFLEET_DATA_DIR") == data_dir
                and "tradovate_local" in argv
            ):
                secrets = {name: env[name] for name in SECRET_VARS if env.get(name)}
        time.sleep(2.0)
    return secrets, argvs


@pytest.mark.timeout(DEMO_TIMEOUT_S + 120)
def test_the_demo_trades_every_session_against_the_local_tradovate_server(
    redis_url: str, tmp_path: Path
) -> None:
    env = cli_env(
        redis_url,
        f"sqlite:///{tmp_path / 'demo.db'}",
        paper_url(redis_url),
        data_dir=str(tmp_path),
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        [*DEMO, "--broker", "tradovate-local", "--json", "--since", SINCE],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "demo.err").open("w"),
        text=True,
    )
    try:
        secrets, argvs = _watch(proc, str(tmp_path))
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # SIGTERM: the demo stops its children (own process groups)
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    wall = time.monotonic() - started
    err = (tmp_path / "demo.err").read_text(errors="replace")
    assert proc.returncode == 0, err[-4000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    print(f"demo --broker tradovate-local: {wall:.0f}s", summary["sessions"])

    assert summary["broker"] == "tradovate-local"
    sessions = summary["sessions"]
    assert sorted((s["product"], s["contract"]) for s in sessions) == [
        ("ES", "ESH14"),
        ("ES", "ESH14"),
        ("GC", "GCZ13"),
    ]
    for session in sessions:
        name = session["name"]
        assert session["ticks_processed"] > 0 and session["ticks_rejected"] == 0, name
        assert session["orders"] >= session["fills"] > 0, name
        assert session["position"] == session["broker_position"], name

    es = {s["id"] for s in sessions if s["product"] == "ES"}
    assert {r["session_id"] for r in summary["rolls"]} == es
    for roll in summary["rolls"]:
        assert (roll["from"], roll["to"], roll["status"]) == ("ESZ13", "ESH14", "done"), roll

    # the server's own truth, not the adapter's reading of it
    state: dict[str, Any] = json.loads(Path(summary["broker_state"]).read_text())
    names = {a["id"]: a["name"] for a in state["accounts"]}
    held: dict[str, list[int]] = {}
    for position in state["positions"]:
        if int(position["netPos"]) != 0:
            held.setdefault(names[position["accountId"]], []).append(int(position["netPos"]))
    fills: dict[str, int] = {}
    order_account = {o["id"]: names[o["accountId"]] for o in state["orders"]}
    for fill in state["fills"]:
        account = order_account[fill["orderId"]]
        fills[account] = fills.get(account, 0) + 1
    for session in sessions:
        account = session["account"]
        expected = [session["position"]] if session["position"] else []
        assert held.get(account, []) == expected, (account, held)
        assert fills.get(account, 0) >= session["fills"] > 0, account

    # the demo stopped what it started: server, listener, workers, beat
    def ours() -> list[str]:
        return [a for _, a, e in _processes() if e.get("TRADEFLEET_DATA_DIR") == str(tmp_path)]

    deadline = time.monotonic() + 30
    while ours() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not ours(), ours()

    # secrets: never on a command line, never in a log
    assert set(secrets) == set(SECRET_VARS), "the server's secrets were not seen"
    assert argvs
    logs = sorted((tmp_path / "demo-logs").glob("*.log"))
    assert {p.stem for p in logs} >= {"worker", "beat", "tradovate-local", "tradovate-listener"}
    texts = {p.name: p.read_text(errors="replace") for p in logs}
    texts["demo stderr"] = err
    texts["demo stdout"] = stdout
    for name, value in secrets.items():
        assert not any(value in argv for argv in argvs), f"{name} on a command line"
        for where, text in texts.items():
            assert value not in text, f"{name} in {where}"
    for where, text in texts.items():
        assert "Traceback" not in text, f"a traceback in {where}: {text[-3000:]}"
        assert "Bearer " not in text, f"an access token in {where}"


def test_a_since_outside_the_replay_is_one_line_and_exit_2(redis_url: str, tmp_path: Path) -> None:
    env = cli_env(redis_url, f"sqlite:///{tmp_path / 'demo.db'}", paper_url(redis_url))
    for since, expected in (
        ("2013-12-25", "tradefleet: --since 2013-12-25 is outside the ES replay"),
        ("next week", "tradefleet: --since must be a date YYYY-MM-DD, got 'next week'"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "workers.cli.main", "demo", "--since", since],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_an_unknown_demo_broker_is_one_line_and_exit_2(redis_url: str, tmp_path: Path) -> None:
    env = cli_env(redis_url, f"sqlite:///{tmp_path / 'demo.db'}", paper_url(redis_url))
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli.main", "demo", "--broker", "tradovate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "tradefleet: unknown demo broker 'tradovate' (known: paper, tradovate-local)"
    ]
    assert not (tmp_path / "demo-logs").exists()
