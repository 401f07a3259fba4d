"""Child processes for one-command runs (the demo, the benchmark): Redis, workers, beat.

Every child runs in its own process group so that stopping it stops its pool children too;
``ChildProcesses`` stops them all on exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import redis

from trading.exceptions import ServiceUnavailable
from workers.connections import REDIS_FIX, redact_url, redis_client

STOP_TIMEOUT_S = 15.0


def celery_worker_argv(
    nodename: str, queues: Sequence[str], concurrency: int, loglevel: str = "WARNING"
) -> list[str]:
    """The command line of one prefork worker consuming ``queues``."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "worker",
        "--pool",
        "prefork",
        "-c",
        str(concurrency),
        "-Q",
        ",".join(queues),
        "-n",
        nodename,
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        loglevel,
    ]


def celery_beat_argv(schedule_path: Path, loglevel: str = "WARNING") -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "beat",
        "--schedule",
        str(schedule_path),
        "--loglevel",
        loglevel,
    ]


@dataclass
class ChildProcesses:
    """Starts named children with logs in ``log_dir``; stops every one of them on exit."""

    log_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` as the child ``name``, its output in ``<log_dir>/<name>.log``; its
        environment is this process's, then ``self.env``, then ``env`` (this child's own:
        secrets it alone needs travel here, never on its command line)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, **(env or {}), "PYTHONUNBUFFERED": "1"}
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to each child's main process (a Celery worker's warm shutdown: its pool
        finishes the tasks it runs; signalling the whole group would kill them mid-task), then
        SIGKILL to the group of any still running at the deadline, and to whatever a child
        that exited left behind in its group."""
        for proc in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.children.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=5)
            else:
                _signal_group(proc, signal.SIGKILL)
        self.children.clear()

    def __enter__(self) -> ChildProcesses:
        self._previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        signal.signal(signal.SIGTERM, self._previous)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        return


def ensure_redis(url: str, children: ChildProcesses, timeout_s: float = 10.0) -> bool:
    """Make sure Redis answers at ``url``; start a local ``redis-server`` when none does.

    Returns True when this call started one. Raises ``ServiceUnavailable`` with the fix when
    Redis is down and cannot be started here (not local, or redis-server not installed).
    """
    if _pings(url):
        return False
    parts = urlsplit(url)
    exe = shutil.which("redis-server")
    local = parts.scheme == "redis" and parts.hostname in {"127.0.0.1", "localhost"}
    if exe is None or not local:
        raise ServiceUnavailable(f"Redis is not answering at {redact_url(url)}; {REDIS_FIX}")
    data_dir = children.log_dir / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    children.start(
        "redis",
        [
            exe,
            "--port",
            str(parts.port or 6379),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
        ],
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _pings(url):
            return True
        time.sleep(0.05)
    raise ServiceUnavailable(f"started redis-server but it does not answer at {redact_url(url)}")


def _pings(url: str) -> bool:
    client = redis_client(url, timeout_s=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()
