"""The fleet's processes on the drill's hosts, and a supervisor that restarts what dies.

Each worker host runs three Celery workers, as an operator would lay one out: ``ticks`` (the
tick path), ``orders`` and ``ops`` (reconciliation, rolls and the default queue); beat runs on
the first worker host (on two in the two-beats drill); the feed runs on the feed host. Every
process runs inside its host's network namespace (``Network.argv``) in a process group of its
own, with the fleet's settings as environment variables (no secret on a command line).

A worker that dies is started again after ``RESTART_DELAY_S``, as systemd's ``Restart=always``
would on a real host; a host taken down (``down``) stays down until ``up``. The drills reach
processes by host: every pid in a host's namespace (``ip netns pids``), or its workers'.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from workers.tools.drill.net import FEED_HOST, WORKER_HOSTS, Network, netns_pids
from workers.tools.processes import ChildProcesses, celery_beat_argv, celery_worker_argv

RESTART_DELAY_S = 1.0
SUPERVISE_INTERVAL_S = 0.2


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One Celery worker of a worker host."""

    role: str
    queues: tuple[str, ...]
    concurrency: int


WORKERS: tuple[WorkerSpec, ...] = (
    WorkerSpec("ticks", ("ticks",), 1),
    WorkerSpec("orders", ("orders",), 1),
    WorkerSpec("ops", ("reconcile", "rolls", "default"), 1),
)


class HostProcesses:
    """Every process of one run on the drill's hosts; ``stop`` ends them all."""

    def __init__(self, net: Network, env: Mapping[str, str], log_dir: Path) -> None:
        self.net = net
        self.log_dir = log_dir
        self.children = ChildProcesses(log_dir=log_dir, env=dict(env))
        self._wanted: dict[str, tuple[str, list[str]]] = {}
        self._down: set[str] = set()
        self._restarts: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self.restarted = 0

    # ------------------------------------------------------------ starting

    def start_workers(self, hosts: Sequence[str] = WORKER_HOSTS) -> None:
        for host in hosts:
            for spec in WORKERS:
                name = f"{host}-{spec.role}"
                argv = celery_worker_argv(f"{name}@drill", spec.queues, spec.concurrency)
                self._start(name, host, argv)
        if not self._supervisor.is_alive():
            self._supervisor.start()

    def start_beat(self, host: str) -> None:
        schedule = self.log_dir / f"beat-{host}.schedule"
        self._start(f"{host}-beat", host, celery_beat_argv(schedule))

    def start_feed(self, scenario: str, fuzz_seed: int | None = None) -> subprocess.Popen[bytes]:
        """The feed process on the feed host (not restarted: the runner waits for its end);
        with ``fuzz_seed`` it publishes the fuzzed plan."""
        argv = [sys.executable, "-m", "workers.cli.main", "drill-feed", scenario]
        if fuzz_seed is not None:
            argv += ["--fuzz", str(fuzz_seed)]
        return self.children.start("feed", self.net.argv(FEED_HOST, argv))

    def _start(self, name: str, host: str, argv: list[str]) -> None:
        with self._lock:
            self._wanted[name] = (host, argv)
            self.children.start(name, self.net.argv(host, argv))

    # ------------------------------------------------------------ supervising

    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_INTERVAL_S):
            with self._lock:
                for name, (host, argv) in self._wanted.items():
                    proc = self.children.children.get(name)
                    if host in self._down or proc is None or proc.poll() is None:
                        continue
                    due = self._restarts.setdefault(name, time.monotonic() + RESTART_DELAY_S)
                    if time.monotonic() >= due:
                        _kill_group(proc.pid, signal.SIGKILL)
                        self.children.start(name, self.net.argv(host, argv))
                        self._restarts.pop(name, None)
                        self.restarted += 1

    # ------------------------------------------------------------ faults

    def worker_pids(self, hosts: Sequence[str] = WORKER_HOSTS) -> list[int]:
        """Every Celery worker process (main and pool children) on ``hosts``, beat left out."""
        pids = []
        for host in hosts:
            for pid in netns_pids(self.net.namespace(host)):
                cmdline = _cmdline(pid)
                if "celery" in cmdline and " worker " in f" {cmdline} ":
                    pids.append(pid)
        return pids

    def kill_random_worker(self, rng: random.Random) -> int | None:
        """SIGKILL one worker process (main or pool child) picked at random; its pid."""
        pids = self.worker_pids()
        if not pids:
            return None
        pid = rng.choice(pids)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return pid

    def pause(self, pid: int) -> None:
        """SIGSTOP: the process holds whatever it holds (a lease, a message) and does nothing."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)

    def resume(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    def down(self, host: str) -> int:
        """The whole host dies: SIGKILL to every process in its namespace, none restarted
        until ``up``; how many were killed."""
        with self._lock:
            self._down.add(host)
            pids = netns_pids(self.net.namespace(host))
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return len(pids)

    def up(self, host: str) -> None:
        with self._lock:
            self._down.discard(host)

    # ------------------------------------------------------------ stopping

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=5)
        with self._lock:
            self.children.stop()


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
