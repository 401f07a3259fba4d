"""Real ``celery worker`` subprocesses for integration tests.

``CeleryWorker`` starts one worker (prefork pool) against a given Redis URL, waits until it
answers a remote-control ping, and stops it on exit (SIGTERM, then SIGKILL after a deadline).
``kill(signal.SIGKILL)`` lets a test kill it abruptly.

The ``start_worker`` fixture is a factory; every worker it starts is stopped at teardown::

    from tests.kit import workers as worker_fixtures

    start_worker = worker_fixtures.start_worker  # makes the fixture visible to this module

    def test_x(start_worker, redis_url):
        worker = start_worker(redis_url, queues=("ticks",), concurrency=1)

The test process talks to the worker through its own app built on the same private URL:
``create_app(Settings(redis_url=redis_url))`` (``worker.app`` is one, ready to use).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import pytest
from celery import Celery

from workers.celery_app import create_app
from workers.settings import Settings
from workers.tools.processes import celery_worker_argv

REPO_ROOT = Path(__file__).resolve().parents[2]
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
        base = name or f"tfw{next(_counter)}-{uuid.uuid4().hex[:8]}"
        self.nodename = f"{base}@{socket.gethostname()}"
        self.log_path = Path(log_dir) / f"{base}.log"
        self.extra_env = dict(env or {})
        self.loglevel = loglevel
        self.app: Celery = create_app(Settings(redis_url=redis_url))
        self.proc: subprocess.Popen[bytes] | None = None

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
        env = dict(os.environ)
        env.update(self.extra_env)
        env["TRADEFLEET_REDIS_URL"] = self.redis_url
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"worker {self.nodename} exited early:\n{self.log_tail()}")
            replies = self.app.control.ping(destination=[self.nodename], timeout=0.5) or []
            if any(self.nodename in reply for reply in replies):
                return
        self.stop()
        raise AssertionError(
            f"worker {self.nodename} did not answer a ping in {timeout}s:\n{self.log_tail()}"
        )

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
        self._reap_group()
        self.app.close()

    def _reap_group(self) -> None:
        """Pool children left behind by a killed main process are killed too."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_text().splitlines()[-lines:])

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


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[WorkerFactory]:
    """A factory: ``start_worker(redis_url, queues=..., concurrency=..., env=...)``.

    Each call starts a worker and waits until it answers; all are stopped at teardown.
    """
    started: list[CeleryWorker] = []

    def factory(
        redis_url: str,
        *,
        queues: Sequence[str] = ALL_QUEUES,
        concurrency: int = 1,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CeleryWorker:
        worker = CeleryWorker(
            redis_url,
            tmp_path / "workers",
            queues=queues,
            concurrency=concurrency,
            name=name,
            env=env,
        )
        started.append(worker)
        return worker.start()

    yield factory
    for worker in reversed(started):
        worker.stop()
