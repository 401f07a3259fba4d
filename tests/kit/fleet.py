"""One rig for a fleet of real Celery worker processes: ``Fleet``.

A ``Fleet`` points one ``Settings`` at a private Redis (sessions in db 0, the paper broker in
db 1) and an SQLite file; it creates sessions with ``workers.sessions.create.create_session``,
starts real workers and beat on those settings (stopped when the fleet closes), publishes
replay ticks with the real ``TickPublisher``, waits (polling with a deadline) until every
session's ``_cursor`` has reached its stream's last id and every order is final, reads what
every part holds (the Redis state, ``_progress``, the SQL orders and events, the paper broker's
positions and orders per account), and gives a session a position or an order behind its back.

What it replays is ``tests.kit.replay``; runs to compare, ``tests.kit.runs``; the paper broker
reached directly, ``tests.kit.paper``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, cast

import redis
from celery import Celery
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from models.codec import decode_field, state_key
from models.meta import CURSOR_FIELD, PROGRESS_FIELD, RECONCILE_FIELD
from models.progress import TickProgress
from models.state import OpenPosition, SessionState, WorkingOrder
from models.tables import EventKind, EventRow, FillRow, OrderRow
from tests.kit.cli import cli_env
from tests.kit.redis import paper_url
from tests.kit.replay import ACTIVE, SessionPlan, StrategySpec, first_tick_time
from tests.kit.snapshots import (
    CONTRACT,
    FillView,
    RunResult,
    SessionSnapshot,
    needed_stop,
    order_view,
    reduce_coid,
    seq_leg,
    text,
)
from tests.kit.wait import wait_until
from tests.kit.workers import CeleryWorker
from trading.market import Tick
from trading.reconcile import ReconcileMeta
from workers.celery_app import create_app
from workers.db.engines import make_engine, upgrade
from workers.db.event_rows import list_events
from workers.db.order_rows import insert_order_if_absent, update_order_row
from workers.feeds.runner import run_feed
from workers.orders.send import FINAL
from workers.runtime import Runtime, make_publisher
from workers.sessions.create import create_session
from workers.settings import Settings, grouped
from workers.state.store import StateChanges, StateStore
from workers.stops.sync import is_stop_id
from workers.ticks.keys import stream_key, subscribers_key
from workers.ticks.publisher import PublishResult, RawTick, TickPublisher
from workers.tools.processes import ChildProcesses, celery_beat_argv

SETTLE_TIMEOUT_S = 240.0
WORKER_QUEUES = ("ticks", "orders")


def settings_of(variables: Mapping[str, object]) -> Settings:
    """The settings of a worker given these ``TRADEFLEET_*`` variables (the others as in this
    process)."""
    return Settings(**grouped(variables))


# --------------------------------------------------------------------------- the rig


class Fleet:
    """One run's private world: settings, workers and beat, sessions, publishing, waiting,
    reading, snapshots."""

    default_strategy: ClassVar[StrategySpec] = ACTIVE
    """What ``create`` runs unless told otherwise."""

    def __init__(
        self, redis_url: str, workdir: Path, *, database_url: str | None = None, **overrides: Any
    ) -> None:
        """``overrides``: settings for this run by their variables' names (``lock_ttl_ms=2000``
        for ``TRADEFLEET_LOCK_TTL_MS``, ...); the workers get the same variables.
        ``database_url``: the run's database (an SQLite file in ``workdir`` by default)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.redis_url = redis_url
        self.paper_url = paper_url(redis_url)
        self.database_url = database_url or f"sqlite:///{workdir / 'tradefleet.db'}"
        self.overrides = dict(overrides)
        self.settings = settings_of({**self.worker_env(), "TRADEFLEET_REDIS_URL": redis_url})
        self.client = redis.Redis.from_url(redis_url)
        self.broker_client = redis.Redis.from_url(self.paper_url)
        self.app: Celery = create_app(self.settings)
        self.engine: Engine = make_engine(self.database_url)
        self.store = StateStore(self.client, self.settings.state.lock_ttl_ms)
        self.rt = Runtime(self.settings)
        self.session_ids: dict[str, str] = {}
        self.accounts: dict[str, str] = {}
        self.published = 0
        self.workers: list[CeleryWorker] = []
        self.beats = ChildProcesses(log_dir=workdir / "beat", env=self.worker_env())
        upgrade(self.database_url)

    # ------------------------------------------------------------ processes

    def worker_env(self) -> dict[str, str]:
        """What a worker or beat needs to serve this fleet: its settings as variables."""
        env = {
            "TRADEFLEET_REDIS_URL": self.redis_url,
            "TRADEFLEET_PAPER_BROKER_URL": self.paper_url,
            "TRADEFLEET_DATABASE_URL": self.database_url,
        }
        for name, value in self.overrides.items():
            env[f"TRADEFLEET_{name.upper()}"] = str(value)
        return env

    def cli_env(self) -> dict[str, str]:
        """The environment of a ``tradefleet`` command on this fleet's stores
        (``tests.kit.cli.run_cli``)."""
        return cli_env(self.redis_url, self.database_url, self.paper_url)

    def start_worker(
        self,
        queues: Sequence[str] = WORKER_QUEUES,
        concurrency: int = 1,
        env: Mapping[str, str] | None = None,
    ) -> CeleryWorker:
        """Start a worker on ``queues`` and wait until it answers a ping; it stops when the
        fleet closes. ``env`` adds to or overrides the fleet's variables."""
        worker = CeleryWorker(
            self.redis_url,
            self.workdir / "workers",
            queues=queues,
            concurrency=concurrency,
            env={**self.worker_env(), **(env or {})},
        )
        self.workers.append(worker)
        return worker.start()

    def start_workers(
        self, count: int, concurrency: int, queues: Sequence[str] = WORKER_QUEUES
    ) -> list[CeleryWorker]:
        """Start ``count`` worker processes at once (each answers a ping before this returns)."""
        with ThreadPoolExecutor(max_workers=count) as pool:
            futures = [pool.submit(self.start_worker, queues, concurrency) for _ in range(count)]
            return [f.result() for f in futures]

    def start_beat(self, name: str = "beat") -> None:
        """A real ``celery beat`` (its sweep every ``sweep_interval_s``, a setting override);
        each ``name`` its own process and schedule file."""
        argv = celery_beat_argv(self.workdir / "beat" / f"{name}.schedule", loglevel="INFO")
        self.beats.start(name, argv)

    def stop_beats(self) -> None:
        self.beats.stop()

    # ------------------------------------------------------------ sessions

    def create_sessions(self, plans: Iterable[SessionPlan]) -> dict[str, str]:
        for plan in plans:
            state = create_session(self.settings, plan.request())
            self.session_ids[plan.name] = state.session.id
            self.accounts[plan.name] = plan.account
        return dict(self.session_ids)

    def create(self, name: str, account: str, strategy: StrategySpec | None = None) -> str:
        """One session on ``account`` running ``strategy`` (the fleet's default); its id."""
        plan = SessionPlan(name, account, *(strategy or self.default_strategy))
        return self.create_sessions([plan])[name]

    def with_settings(self, **changes: Any) -> Settings:
        """The fleet's settings with ``changes`` (by their variables' names, like the fleet's)."""
        variables = {**self.worker_env(), "TRADEFLEET_REDIS_URL": self.redis_url}
        variables.update((f"TRADEFLEET_{name.upper()}", value) for name, value in changes.items())
        return settings_of(variables)

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

    def last_id(self, instrument: str = CONTRACT) -> str:
        entries = cast(list[Any], self.client.xrevrange(stream_key(instrument), count=1))
        return text(entries[0][0]) if entries else "0-0"

    def subscribers(self, instrument: str) -> set[str]:
        members = cast(set[bytes], self.client.smembers(subscribers_key(instrument)))
        return {m.decode() for m in members}

    # ------------------------------------------------------------ reading

    def field(self, name: str, field_name: str) -> str | None:
        """A raw field of the state of session ``name``."""
        return self._field(self.session_ids[name], field_name)

    def _field(self, session_id: str, field_name: str) -> str | None:
        raw = cast(bytes | None, self.client.hget(state_key(session_id), field_name))
        return None if raw is None else text(raw)

    def cursor(self, session_id: str) -> str:
        return self._field(session_id, CURSOR_FIELD) or ""

    def progress(self, name: str) -> TickProgress:
        return TickProgress.from_json(self.field(name, PROGRESS_FIELD))

    def state(self, session_id: str) -> SessionState:
        return self.store.load(session_id)

    def contract(self, session_id: str) -> str:
        return self.state(session_id).session.contract

    def quantity(self, session_id: str) -> int:
        position = self.state(session_id).open_position
        return 0 if position is None else position.quantity

    def reconcile_meta(self, session_id: str) -> ReconcileMeta:
        return ReconcileMeta.from_json(self._field(session_id, RECONCILE_FIELD))

    def consumed(self) -> int:
        """Stream entries consumed so far, summed over the sessions."""
        return sum(
            p.ticks_processed + p.ticks_rejected for p in map(self.progress, self.session_ids)
        )

    def sql_orders(
        self, name: str | None = None, *, session_id: str | None = None
    ) -> list[OrderRow]:
        """The order rows of session ``name`` (or ``session_id``; of every session with
        neither), oldest first."""
        query = select(OrderRow).order_by(OrderRow.id)
        if name is not None:
            session_id = self.session_ids[name]
        if session_id is not None:
            query = query.where(OrderRow.session_id == session_id)
        with Session(self.engine) as db:
            return list(db.scalars(query).all())

    def events(self, session_id: str, kind: EventKind) -> list[EventRow]:
        """The session's events of ``kind``, oldest first."""
        return list(list_events(self.engine, session_id=session_id, kind=kind))

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

    def broker_seq(self, account: str) -> int:
        """How many orders the broker ever created on ``account``."""
        return int(cast(bytes, self.broker_client.get(f"paper:acct:{account}:seq") or 0))

    # ------------------------------------------------------------ waiting

    def settled(self) -> bool:
        """Every cursor at the stream's end, no working copy left, no touched stop's fill
        awaited, every order final but the protective stop each open position needs."""
        return not self.unsettled()

    def unsettled(self) -> list[str]:
        """Why the run has not settled yet (empty when it has)."""
        why: list[str] = []
        for name in self.session_ids:
            last = self.last_id(self.contract(self.session_ids[name]))  # a rolled one's own
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
        if not self.settings.stops.protective:
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

    def wait_read(self, timeout: float = 30) -> None:
        """Until every session has read its stream to the end."""
        wait_until(
            lambda: all(
                self.cursor(sid) == self.last_id(self.contract(sid))
                for sid in self.session_ids.values()
            ),
            timeout=timeout,
            what="every session to read its stream",
        )

    # ------------------------------------------------------------ behind a session's back

    def set_position(self, session_id: str, qty: int, price: str) -> None:
        """Overwrite the session's position (no order, no fill)."""
        with self.store.locked(session_id, wait_s=5) as lease:
            position = OpenPosition(CONTRACT, qty, Decimal(price), opened_at=datetime.now(UTC))
            self.store.write(lease, StateChanges.of({"open_position": position}))

    def local_order(
        self,
        session_id: str,
        coid: str,
        side: str = "buy",
        order_type: str = "market",
        limit: str | None = None,
        status: str = "working",
        *,
        working_copy: bool = True,
        stop: str | None = None,
    ) -> WorkingOrder:
        """The session's own order, decided at the first replay tick: its durable row, and
        (unless told not to) its working copy; a stop order is a protective stop (an exit,
        good till cancelled)."""
        decided = first_tick_time()
        order = WorkingOrder(
            client_order_id=coid,
            contract=CONTRACT,
            side=side,  # type: ignore[arg-type]
            quantity=1,
            order_type=order_type,  # type: ignore[arg-type]
            intent="exit" if order_type == "stop" else "entry",
            status=status,  # type: ignore[arg-type]
            created_at=decided,
            limit_price=None if limit is None else Decimal(limit),
            stop_price=None if stop is None else Decimal(stop),
        )
        tif = "gtc" if order_type == "stop" else "day"
        assert insert_order_if_absent(self.engine, session_id, order, decided, tif)
        update_order_row(self.engine, coid, status)  # type: ignore[arg-type]
        if working_copy:
            with self.store.locked(session_id, wait_s=5) as lease:
                orders = {**lease.value("orders"), coid: order}
                self.store.write(lease, StateChanges.of({"orders": orders}))
        return order

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
            broker_seq=self.broker_seq(account),
        )

    # ------------------------------------------------------------ teardown

    def close(self) -> None:
        self.beats.stop()
        for worker in reversed(self.workers):
            worker.stop()
        self.app.close()
        self.engine.dispose()
        self.client.close()
        self.broker_client.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
