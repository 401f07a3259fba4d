"""Nothing of a drill run outlives it: ``close`` kills what is left in its namespaces and
deletes them, and ``sweep_leftovers`` clears what a killed run left behind."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.kit.wait import wait_until
from tests.workers.tools.drill.conftest import require_root_and_ip
from workers.tools.drill.net import (
    DATA_DIR_INFIX,
    Network,
    link_prefix,
    list_namespaces,
    netns_pids,
    sweep_leftovers,
)
from workers.tools.drill.services import Services

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def test_close_kills_every_process_of_the_run_and_deletes_its_namespaces(
    tmp_path: Path,
) -> None:
    require_root_and_ip()
    net = Network(log_dir=tmp_path / "net").start()
    services = Services(net, tmp_path / "services").start()
    try:
        sleeper = subprocess.Popen(net.argv("w2", ["sleep", "300"]))
        net.impair("w3", delay_ms=1, jitter_ms=0, loss=0)
        net.partition("w1")
        wait_until(lambda: sleeper.pid in net.pids(), timeout=10, what="sleep in w2's namespace")
        pids = net.pids()
        assert {sleeper.pid, services.pid("redis"), services.pid("postgres")} <= pids
        net.close()
        net.close()
        assert not [ns for ns in list_namespaces() if ns.startswith(f"{net.run_name}-")]
        assert not [pid for pid in pids if _alive(pid)]
        assert sleeper.wait(timeout=10) is not None
    finally:
        services.stop()
        net.close()


TERMINATED_RUN = """
import signal, subprocess
from workers.tools.drill.net import Network
with Network() as net:
    sleeper = subprocess.Popen(net.argv("w1", ["sleep", "300"]))
    print(net.run_name, sleeper.pid, flush=True)
    signal.pause()
"""


def test_a_run_terminated_by_sigterm_closes_its_network() -> None:
    require_root_and_ip()
    run = subprocess.Popen(
        [sys.executable, "-c", TERMINATED_RUN], stdout=subprocess.PIPE, text=True
    )
    assert run.stdout is not None
    run_name, sleeper_pid = run.stdout.readline().split()
    assert any(ns.startswith(f"{run_name}-") for ns in list_namespaces())
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=30)
    run.stdout.close()
    assert not [ns for ns in list_namespaces() if ns.startswith(f"{run_name}-")]
    assert not _alive(int(sleeper_pid))


def test_sweep_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    require_root_and_ip()
    run_name = f"tfd-{secrets.token_hex(3)}"
    namespace = f"{run_name}-svc"
    stray = f"{link_prefix(run_name)}xh"
    data = Path(tempfile.mkdtemp(prefix=f"{run_name}{DATA_DIR_INFIX}"))
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    sleeper = None
    try:
        sleeper = subprocess.Popen(["ip", "netns", "exec", namespace, "sleep", "300"])
        subprocess.run(
            ["ip", "link", "add", stray, "type", "veth", "peer", "name", f"{stray[:-1]}s"],
            check=True,
        )
        wait_until(
            lambda: sleeper.pid in netns_pids(namespace),
            timeout=10,
            what="the leftover process in its namespace",
        )
        assert sweep_leftovers(f"{run_name}-") == [namespace]
        assert namespace not in list_namespaces()
        assert sleeper.wait(timeout=10) is not None
        assert stray not in _links()
        assert not data.exists()
    finally:
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, check=False)
        subprocess.run(["ip", "link", "delete", stray], capture_output=True, check=False)
        shutil.rmtree(data, ignore_errors=True)
