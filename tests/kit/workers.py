"""Real ``celery worker`` processes for tests.

``CeleryWorker`` starts one worker (prefork pool) against a given Redis URL the way the demo
and the bench start theirs (``workers.tools.processes``: the same command line, its own
process group, its log in a file), waits until it answers a remote-control ping, and stops it
(SIGTERM to the main process, a warm shutdown; SIGKILL to the group after a deadline).
``kill()`` lets a test kill it abruptly; ``unacked_headers`` shows the messages a worker took
and has not acknowledged.

The ``start_worker`` fixture (tests/conftest.py) starts bare workers for tests without a fleet;
``tests.kit.fleet.Fleet`` starts its own. The test process talks to a worker through its own
app on the same URL (``worker.app``).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import redis
from celery import Celery

from tests.kit.wait import wait_until
from workers.celery_app import create_app
from workers.settings import RedisSettings, Settings
from workers.tools.processes import ChildProcesses, celery_worker_argv

ALL_QUEUES = ("ticks", "orders", "reconcile", "rolls", "default")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0

_counter = itertools.count(1)


class CeleryWorker:
    """One real ``celery worker`` process; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        redis_url: str,
        log_dir: Path,
        *,
        queues: Sequence[str] = ALL_QUEUES,
        concurrency: int = 1,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        loglevel: str = "INFO",
    ) -> None:
        self.redis_url = redis_url
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.name = name or f"tfw{next(_counter)}-{uuid.uuid4().hex[:8]}"
        self.nodename = f"{self.name}@{socket.gethostname()}"
        self.log_path = Path(log_dir) / f"{self.name}.log"
        self.loglevel = loglevel
        self.app: Celery = create_app(Settings(redis=RedisSettings(url=redis_url)))
        self.proc: subprocess.Popen[bytes] | None = None
        self._children = ChildProcesses(
            log_dir=Path(log_dir), env={**(env or {}), "TRADEFLEET_REDIS_URL": redis_url}
        )

    @property
    def argv(self) -> list[str]:
        return celery_worker_argv(self.nodename, self.queues, self.concurrency, self.loglevel)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("worker not started")
        return self.proc.pid

    def start(self, timeout: float = START_TIMEOUT_S) -> CeleryWorker:
        """Start the process and wait until it answers a ping (or fail with its log tail)."""
        self.proc = self._children.start(self.name, self.argv)
        try:
            wait_until(self._answers_ping, timeout=timeout, interval=0, what=self.nodename)
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}:\n{self.log_tail()}") from exc
        return self

    def _answers_ping(self) -> bool:
        if not self.alive():
            raise AssertionError(f"worker {self.nodename} exited early")
        replies = self.app.control.ping(destination=[self.nodename], timeout=0.5) or []
        return any(self.nodename in reply for reply in replies)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL, *, group: bool = True) -> None:
        """Send ``sig`` to the whole process group (main and pool children), or the main only.

        ``kill()`` is a crash of the machine: every process of the worker dies at once.
        """
        if self.proc is None:
            raise RuntimeError("worker not started")
        try:
            if group:
                os.killpg(self.proc.pid, sig)
            elif self.alive():
                self.proc.send_signal(sig)
        except ProcessLookupError:
            return

    def wait_exit(self, timeout: float = STOP_TIMEOUT_S) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to the main process (warm shutdown); SIGKILL to the group at the deadline."""
        if self.proc is None:
            return
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        self.kill(signal.SIGKILL)  # pool children a killed main process left behind
        self.app.close()

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return self._children.log_tail(self.name, lines) or "(no log)"

    def __enter__(self) -> CeleryWorker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


WorkerFactory = Callable[..., CeleryWorker]


def unacked_headers(client: redis.Redis, task: str) -> list[dict[str, Any]]:
    """The headers of the messages of ``task`` that a worker took and has not acknowledged
    (kombu's ``unacked`` hash on the broker's Redis: delivery tag -> [message, exchange,
    routing key]); a message a killed worker held stays there until the visibility timeout."""
    raw = cast(dict[bytes, bytes], client.hgetall("unacked"))
    headers = [json.loads(value)[0]["headers"] for value in raw.values()]
    return [h for h in headers if h.get("task") == task]
