"""The benchmark's private world: its own redis-server, SQLite file, worker processes, sessions.

Nothing here touches a Redis or database the benchmark did not create: the server is started
on a free port in a temporary folder and stopped (with everything in it) at the end.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from celery import Celery

from models.codec import state_key
from models.meta import CURSOR_FIELD, PROGRESS_FIELD
from trading.calendar import listed_months
from trading.contracts import MONTH_CODES, product_of
from trading.exceptions import BadInput, ServiceUnavailable
from workers.celery_app import create_app
from workers.connections import redis_client
from workers.db.engines import dispose_engines, upgrade
from workers.runtime import make_publisher
from workers.sessions.create import NewSession, create_session
from workers.settings import (
    DatabaseSettings,
    LogSettings,
    PathSettings,
    RedisSettings,
    Settings,
    TickSettings,
)
from workers.ticks.latency_probe import LATENCY_KEY
from workers.ticks.publisher import TickPublisher
from workers.tools.processes import ChildProcesses, celery_worker_argv, ensure_redis

WORKER_START_TIMEOUT_S = 60.0
STRATEGY = "sma_cross"
STRATEGY_ARGS = {"fast": "5", "slow": "25"}
"""Warm-up of 25 candles, then a trade only when the averages cross: rare next to the ticks."""
TIMEFRAME = "1m"
PRODUCTS = ("ES", "NQ", "CL")
"""Products whose price grid fits the synthetic feed's 0.25 steps."""


def instrument_names(count: int) -> list[str]:
    """``count`` distinct listed contracts (ESH00, ESM00, ... then NQ, then CL), one per session."""
    names = [
        f"{product}{MONTH_CODES[month - 1]}{year:02d}"
        for product in PRODUCTS
        for year in range(100)
        for month in listed_months(product)
    ]
    if not 0 < count <= len(names):
        raise BadInput(f"the benchmark runs 1 to {len(names)} sessions (one contract each)")
    return names[:count]


@dataclass
class BenchEnv:
    """A running private deployment: settings that point at it, a client, a publisher."""

    settings: Settings
    client: redis.Redis
    app: Celery
    publisher: TickPublisher
    children: ChildProcesses
    workdir: Path
    workers: int
    sessions: dict[str, str]
    """instrument -> session id, in creation order."""

    def create_sessions(
        self, instruments: Sequence[str], strategy_args: Mapping[str, str] = STRATEGY_ARGS
    ) -> float:
        """Create a session (``STRATEGY`` with ``strategy_args``) for each instrument that has
        none yet; returns the seconds spent."""
        started = time.monotonic()
        for instrument in instruments:
            if instrument in self.sessions:
                continue
            state = create_session(
                self.settings,
                NewSession(
                    name=f"bench-{instrument}",
                    account=f"bench-{instrument}",
                    product=product_of(instrument),
                    contract=instrument,
                    strategy=STRATEGY,
                    strategy_args=dict(strategy_args),
                    timeframe=TIMEFRAME,
                    feed="synthetic",
                ),
            )
            self.sessions[instrument] = state.session.id
        return time.monotonic() - started

    def cursors(self, instruments: Sequence[str]) -> list[bytes | None]:
        with self.client.pipeline(transaction=False) as pipe:
            for instrument in instruments:
                pipe.hget(state_key(self.sessions[instrument]), CURSOR_FIELD)
            return list(pipe.execute())

    def progress(self, instruments: Sequence[str]) -> list[bytes | None]:
        with self.client.pipeline(transaction=False) as pipe:
            for instrument in instruments:
                pipe.hget(state_key(self.sessions[instrument]), PROGRESS_FIELD)
            return list(pipe.execute())

    def take_latencies_us(self) -> list[int]:
        """The probe's samples so far (microseconds), emptying the list."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.lrange(LATENCY_KEY, 0, -1)
            pipe.delete(LATENCY_KEY)
            raw, _ = pipe.execute()
        return [int(value) for value in raw]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def bench_env(workers: int, keep_logs: Path | None = None) -> Iterator[BenchEnv]:
    """Start redis-server, migrate a fresh SQLite file, start the workers; stop all on exit."""
    if workers < 1:
        raise BadInput("--workers must be at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="tradefleet-bench-"))
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    settings = Settings(
        redis=RedisSettings(url=redis_url, paper_broker_url=f"redis://127.0.0.1:{port}/1"),
        paths=PathSettings(data_dir=workdir),
        database=DatabaseSettings(url=f"sqlite:///{workdir / 'bench.db'}"),
        ticks=TickSettings(max_drainers=workers),
        log=LogSettings(level="WARNING"),
    )
    env = {
        "TRADEFLEET_REDIS_URL": settings.redis.url,
        "TRADEFLEET_PAPER_BROKER_URL": settings.redis.paper_broker_url,
        "TRADEFLEET_DATA_DIR": str(workdir),
        "TRADEFLEET_DATABASE_URL": settings.database.url,
        "TRADEFLEET_MAX_DRAINERS": str(workers),
        "TRADEFLEET_LATENCY_PROBE": "1",
        "TRADEFLEET_LOG_LEVEL": "WARNING",
    }
    children = ChildProcesses(log_dir=workdir / "logs", env=env)
    client: redis.Redis | None = None
    app: Celery | None = None
    try:
        with children:
            if not ensure_redis(redis_url, children):
                raise ServiceUnavailable(f"port {port} was taken by another Redis; run again")
            upgrade(settings.sqlalchemy_url)
            ticks_node = f"bench-ticks-{port}@{socket.gethostname()}"
            orders_node = f"bench-orders-{port}@{socket.gethostname()}"
            children.start("ticks", celery_worker_argv(ticks_node, ["ticks"], workers))
            children.start("orders", celery_worker_argv(orders_node, ["orders"], 1))
            app = create_app(settings)
            client = redis_client(redis_url, timeout_s=30.0)
            _wait_for_workers(app, children, (ticks_node, orders_node))
            yield BenchEnv(
                settings=settings,
                client=client,
                app=app,
                publisher=make_publisher(client, settings, app),
                children=children,
                workdir=workdir,
                workers=workers,
                sessions={},
            )
    finally:
        if client is not None:
            client.close()
        if app is not None:
            app.close()
        dispose_engines()
        if keep_logs is not None and (workdir / "logs").exists():
            shutil.copytree(workdir / "logs", keep_logs, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_workers(app: Celery, children: ChildProcesses, nodes: Sequence[str]) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    waiting = set(nodes)
    while waiting:
        for name, proc in children.children.items():
            if proc.poll() is not None:
                raise ServiceUnavailable(
                    f"bench child {name!r} exited: {children.log_tail(name, 5)}"
                )
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"workers {sorted(waiting)} did not answer a ping in time")
        for reply in app.control.ping(destination=sorted(waiting), timeout=0.5) or []:
            waiting -= set(reply)
