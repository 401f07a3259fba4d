"""A reusable rig for the tick path end to end: private Redis, real worker processes, SQLite.

``TickPathRig`` points one ``Settings`` at a private Redis (sessions in db 0, the paper broker
in db 1) and an SQLite file; it creates sessions with ``workers.sessions.create.create_session``,
publishes replay ticks with the real ``TickPublisher``, waits (polling with a deadline) until
every session's ``_cursor`` has reached its stream's last id and every order is final, and
snapshots what every part holds: the Redis state, ``_progress``, the SQL orders, fills and
events, and the paper broker's positions and orders per account.

Snapshots and their comparison live in ``tests.kit.snapshots``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import redis
from celery import Celery
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from models.codec import decode_field, state_key
from models.tables import FillRow, OrderRow
from tests.conftest import RedisServer, wait_until
from tests.kit.snapshots import (
    CONTRACT,
    FillView,
    OrderView,
    RunResult,
    SessionSnapshot,
    assert_consistent,
    differences,
    dump,
    needed_stop,
    order_view,
    reduce_coid,
    seq_leg,
    text,
)
from tests.kit.workers import REPO_ROOT, CeleryWorker
from trading.market import Tick
from workers.celery_app import create_app
from workers.db.engines import make_engine, upgrade
from workers.db.session_rows import list_events
from workers.feeds.replay import ReplayConfig, ReplaySource
from workers.feeds.runner import run_feed
from workers.orders.send import FINAL
from workers.runtime import make_publisher
from workers.sessions.create import NewSession, create_session
from workers.settings import DEFAULT_MARKET_DATA_DIR, Settings
from workers.state.store import StateStore
from workers.stops.sync import is_stop_id
from workers.ticks.keys import stream_key
from workers.ticks.publisher import PublishResult, RawTick, TickPublisher
from workers.ticks.step import CURSOR_FIELD, PROGRESS_FIELD, TickProgress
from workers.tools.processes import celery_beat_argv

PRODUCT = "ES"
REPLAY_DAY = date(2013, 10, 7)
SETTLE_TIMEOUT_S = 240.0
WORKER_QUEUES = ("ticks", "orders")


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """One session to create: each on its own account, so the broker's account position is
    the session's own."""

    name: str
    account: str
    strategy: str
    args: tuple[tuple[str, str], ...]
    timeframe: str = "1m"
    quantity: int = 1

    def request(self) -> NewSession:
        return NewSession(
            name=self.name,
            account=self.account,
            product=PRODUCT,
            contract=CONTRACT,
            strategy=self.strategy,
            strategy_args=dict(self.args),
            timeframe=self.timeframe,
            quantity=self.quantity,
        )


DEFAULT_PLANS: tuple[SessionPlan, ...] = (
    SessionPlan("sma-fast", "ACC-SMA", "sma_cross", (("fast", "3"), ("slow", "8"))),
    SessionPlan("breakout", "ACC-BRK", "breakout", (("lookback", "10"),)),
)
TRAILING = SessionPlan(
    "trailing", "ACC-TRL", "breakout", (("lookback", "10"), ("atr_mult", "3"), ("trail", "2"))
)
"""A breakout whose stop trails the close: it moves its protective stop many times a day."""
REFERENCE_PLANS: tuple[SessionPlan, ...] = (*DEFAULT_PLANS, TRAILING)
"""The sessions of the reference run (one for all the tick-path tests: every run compares
the sessions it has with the reference's)."""


@cache
def replay_ticks(day: date = REPLAY_DAY) -> tuple[Tick, ...]:
    """The real ESZ13 replay of one day (about 5,500 ticks), read once per process."""
    config = ReplayConfig(product=PRODUCT, contract=CONTRACT, date_from=day, date_to=day)
    return tuple(ReplaySource(config, data_dir=DEFAULT_MARKET_DATA_DIR).ticks())


def paper_url_for(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + "/1"


# --------------------------------------------------------------------------- the rig


class TickPathRig:
    """One run's private world: settings, sessions, publishing, waiting, snapshots."""

    def __init__(self, redis_url: str, workdir: Path, **overrides: Any) -> None:
        """``overrides``: ``Settings`` fields for this run (``lock_ttl_ms=2000``, ...); the
        workers get them too, as ``TRADEFLEET_*`` variables."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.redis_url = redis_url
        self.paper_url = paper_url_for(redis_url)
        self.database_url = f"sqlite:///{workdir / 'tradefleet.db'}"
        self.overrides = dict(overrides)
        self.settings = Settings(
            redis_url=redis_url,
            paper_broker_url=self.paper_url,
            database_url=self.database_url,
            **self.overrides,
        )
        self.client = redis.Redis.from_url(redis_url)
        self.broker_client = redis.Redis.from_url(self.paper_url)
        self.app: Celery = create_app(self.settings)
        self.engine: Engine = make_engine(self.database_url)
        self.store = StateStore(self.client, self.settings.lock_ttl_ms)
        self.session_ids: dict[str, str] = {}
        self.accounts: dict[str, str] = {}
        self.published = 0
        self.beat: BeatProcess | None = None
        upgrade(self.database_url)

    # ------------------------------------------------------------ setup

    def worker_env(self) -> dict[str, str]:
        """What a worker needs to serve this rig (``start_worker(..., env=rig.worker_env())``)."""
        env = {
            "TRADEFLEET_PAPER_BROKER_URL": self.paper_url,
            "TRADEFLEET_DATABASE_URL": self.database_url,
        }
        for name, value in self.overrides.items():
            env[f"TRADEFLEET_{name.upper()}"] = str(value)
        return env

    def start_workers(
        self, factory: Callable[..., CeleryWorker], count: int, concurrency: int
    ) -> list[CeleryWorker]:
        """Start ``count`` worker processes at once (each answers a ping before this returns)."""
        with ThreadPoolExecutor(max_workers=count) as pool:
            futures = [
                pool.submit(
                    factory,
                    self.redis_url,
                    queues=WORKER_QUEUES,
                    concurrency=concurrency,
                    env=self.worker_env(),
                )
                for _ in range(count)
            ]
            return [f.result() for f in futures]

    def start_beat(self) -> BeatProcess:
        """Real ``celery beat`` (its sweep every ``sweep_interval_s``, a setting override)."""
        env = {**self.worker_env(), "TRADEFLEET_REDIS_URL": self.redis_url}
        self.beat = BeatProcess(self.workdir / "beat", env).start()
        return self.beat

    def create_sessions(self, plans: Iterable[SessionPlan]) -> dict[str, str]:
        for plan in plans:
            state = create_session(self.settings, plan.request())
            self.session_ids[plan.name] = state.session.id
            self.accounts[plan.name] = plan.account
        return dict(self.session_ids)

    # ------------------------------------------------------------ ticks

    def publisher(self) -> TickPublisher:
        return make_publisher(self.client, self.settings, self.app)

    def publish_replay(self, ticks: Sequence[Tick], batch: int = 1_000) -> int:
        report = run_feed(ticks, self.publisher(), None, batch=batch)
        self.published += report.published
        return report.published

    def publish_raw(self, rows: Sequence[RawTick]) -> PublishResult:
        result = self.publisher().publish_raw(CONTRACT, rows)
        self.published += result.published
        return result

    def last_id(self) -> str:
        entries = cast(list[Any], self.client.xrevrange(stream_key(CONTRACT), count=1))
        return text(entries[0][0]) if entries else "0-0"

    # ------------------------------------------------------------ reading

    def field(self, name: str, field_name: str) -> str | None:
        raw = cast(bytes | None, self.client.hget(state_key(self.session_ids[name]), field_name))
        return None if raw is None else text(raw)

    def progress(self, name: str) -> TickProgress:
        return TickProgress.from_json(self.field(name, PROGRESS_FIELD))

    def consumed(self) -> int:
        """Stream entries consumed so far, summed over the sessions."""
        return sum(
            p.ticks_processed + p.ticks_rejected for p in map(self.progress, self.session_ids)
        )

    def sql_orders(self, name: str | None = None) -> list[OrderRow]:
        query = select(OrderRow).order_by(OrderRow.id)
        if name is not None:
            query = query.where(OrderRow.session_id == self.session_ids[name])
        with Session(self.engine) as db:
            return list(db.scalars(query).all())

    def settled(self) -> bool:
        """Every cursor at the stream's end, no working copy left, no touched stop's fill
        awaited, every order final but the protective stop each open position needs."""
        return not self.unsettled()

    def unsettled(self) -> list[str]:
        """Why the run has not settled yet (empty when it has)."""
        last = self.last_id()
        why: list[str] = []
        for name in self.session_ids:
            if self.field(name, CURSOR_FIELD) != last:
                why.append(f"{name}: cursor {self.field(name, CURSOR_FIELD)} before {last}")
            working = decode_field("orders", self.field(name, "orders") or "{}")
            if working:
                why.append(f"{name}: working copies {sorted(working)[:3]}...")
            if self.progress(name).stops_out:
                why.append(f"{name}: touched stops awaiting fills {self.progress(name).stops_out}")
            if not self._stop_settled(name):
                why.append(f"{name}: open stop rows do not fit the position")
        why += [
            f"order {row.client_order_id} is {row.status}"
            for row in self.sql_orders()
            if row.status not in FINAL and not is_stop_id(row.client_order_id)
        ][:3]
        return why

    def _stop_settled(self, name: str) -> bool:
        """The session's open stop rows are exactly the working stop its position needs (with
        protective stops on)."""
        if not self.settings.protective_stops:
            return True
        held = self.store.load(self.session_ids[name]).open_position
        rows = [
            row
            for row in self.sql_orders(name)
            if is_stop_id(row.client_order_id) and row.status not in FINAL
        ]
        working = all(row.status == "working" for row in rows)
        return working and [(r.side, r.quantity, r.stop_price) for r in rows] == needed_stop(held)

    def wait_settled(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        try:
            wait_until(self.settled, timeout=timeout, interval=0.1, what="the tick path to settle")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {'; '.join(self.unsettled())}") from exc

    # ------------------------------------------------------------ snapshots

    def snapshot(self) -> RunResult:
        sessions = {name: self.session_snapshot(name) for name in self.session_ids}
        return RunResult(self.published, self.last_id(), sessions)

    def session_snapshot(self, name: str) -> SessionSnapshot:
        sid = self.session_ids[name]
        account = self.accounts[name]
        with Session(self.engine) as db:
            rows = db.scalars(
                select(OrderRow).where(OrderRow.session_id == sid).order_by(OrderRow.id)
            ).all()
            keys = {row.id: reduce_coid(sid, row.client_order_id) for row in rows}
            fill_rows = db.scalars(select(FillRow).where(FillRow.order_id.in_(keys))).all()
            orders = tuple(order_view(keys[row.id], row) for row in rows)
            fills = tuple(
                sorted(
                    (
                        FillView(keys[f.order_id], f.quantity, f.price, f.commission, f.filled_at)
                        for f in fill_rows
                    ),
                    key=lambda f: seq_leg(f.key),
                )
            )
        events = list_events(self.engine, session_id=sid)
        return SessionSnapshot(
            name=name,
            session_id=sid,
            account=account,
            state=self.store.load(sid),
            progress=self.progress(name),
            cursor=self.field(name, CURSOR_FIELD) or "",
            orders=orders,
            fills=fills,
            events=tuple((e.kind, e.severity, e.message) for e in events),
            broker_positions=self.broker_positions(account),
            broker_orders=self.broker_orders(account),
            broker_seq=int(cast(bytes, self.broker_client.get(f"paper:acct:{account}:seq") or 0)),
        )

    def broker_positions(self, account: str) -> dict[str, int]:
        raw = cast(
            dict[bytes, bytes], self.broker_client.hgetall(f"paper:acct:{account}:positions")
        )
        held = {text(k): int(v) for k, v in raw.items()}
        return {contract: qty for contract, qty in held.items() if qty != 0}

    def broker_orders(self, account: str) -> tuple[str, ...]:
        """Every client order id the broker holds an order for, on ``account``."""
        prefix = f"paper:acct:{account}:order:"
        keys = self.broker_client.scan_iter(match=prefix + "*", count=1_000)
        return tuple(sorted(text(k)[len(prefix) :] for k in keys))

    # ------------------------------------------------------------ teardown

    def close(self) -> None:
        if self.beat is not None:
            self.beat.stop()
        self.app.close()
        self.engine.dispose()
        self.client.close()
        self.broker_client.close()

    def __enter__(self) -> TickPathRig:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- beat


class BeatProcess:
    """A real ``celery beat`` process (its own process group), stopped on ``stop()``."""

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = workdir / "beat.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BeatProcess:
        argv = celery_beat_argv(self.workdir / "schedule", loglevel="INFO")
        assert argv[0] == sys.executable
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


# --------------------------------------------------------------------------- reference run

_references: dict[tuple[tuple[SessionPlan, ...], tuple[tuple[str, Any], ...]], RunResult] = {}


def reference_run(
    server: RedisServer,
    workdir: Path,
    plans: tuple[SessionPlan, ...] = REFERENCE_PLANS,
    **overrides: Any,
) -> RunResult:
    """The replay through ONE worker process with ONE pool child: the reference every other
    run must equal. Computed once per test process and settings ``overrides`` (the private
    server is flushed first)."""
    key = (plans, tuple(sorted(overrides.items())))
    cached = _references.get(key)
    if cached is not None:
        return cached
    flush = server.client()
    flush.flushall()
    flush.close()
    with TickPathRig(server.url, workdir, **overrides) as rig:
        rig.create_sessions(plans)
        worker = CeleryWorker(
            server.url,
            workdir / "workers",
            queues=WORKER_QUEUES,
            concurrency=1,
            env=rig.worker_env(),
        )
        with worker:
            rig.publish_replay(replay_ticks())
            rig.wait_settled()
            result = rig.snapshot()
    _references[key] = result
    return result


def workers_run(
    redis_url: str,
    workdir: Path,
    start_worker: Callable[..., CeleryWorker],
    plans: tuple[SessionPlan, ...] = REFERENCE_PLANS,
    workers: int = 3,
    **overrides: Any,
) -> RunResult:
    """The replay through ``workers`` worker processes (two pool children each), settled and
    checked consistent: to compare with ``reference_run``."""
    with TickPathRig(redis_url, workdir, **overrides) as rig:
        rig.create_sessions(plans)
        rig.start_workers(start_worker, count=workers, concurrency=2)
        rig.publish_replay(replay_ticks())
        rig.wait_settled()
        result = rig.snapshot()
    assert_consistent(result)
    return result


__all__ = [
    "CONTRACT",
    "DEFAULT_PLANS",
    "REFERENCE_PLANS",
    "TRAILING",
    "BeatProcess",
    "FillView",
    "OrderView",
    "RunResult",
    "SessionPlan",
    "SessionSnapshot",
    "TickPathRig",
    "assert_consistent",
    "differences",
    "dump",
    "reduce_coid",
    "reference_run",
    "replay_ticks",
    "workers_run",
]
