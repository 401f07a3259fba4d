"""One run of a drill (or the reference): fresh stores, the fleet on the drill's hosts, the
scenario's sessions, the feed, the drill's faults, then how it went.

The stores emptied (both Redis servers flushed, a new PostgreSQL database migrated), the workers
started on the three worker hosts and beat where the drill wants it, the scenario's sessions
created (warmed up from the replay files up to the window's start), the feed started on the feed
host, the drill's faults injected, then: how long until every session had read every tick
published when the last fault ended (``recovery_s``), the feed's end, every session settled (its
cursor at its stream's end, no order in flight, no touched stop awaiting its fill, its position
equal to the broker's), and what every store holds (``observe``).
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import redis
import sqlalchemy.exc
from celery import Celery
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from models.codec import decode_field, state_key
from models.meta import CURSOR_FIELD, PROGRESS_FIELD, RECONCILE_FIELD
from models.progress import TickProgress
from models.tables import EventRow
from trading.exceptions import ServiceUnavailable
from trading.reconcile import ReconcileMeta
from workers.brokers.commands import QueryPositions
from workers.brokers.paper.broker import PaperBroker
from workers.brokers.registry import build_broker
from workers.celery_app import create_app
from workers.db.engines import make_engine, upgrade
from workers.db.order_rows import unsettled_order_count
from workers.reconcile.schedule import STATS_KEY, won_key
from workers.sessions.create import NewSession, create_session
from workers.settings import Settings, grouped
from workers.state.store import StateStore
from workers.ticks.keys import stream_key
from workers.tools.drill.drills import Drill, Fault
from workers.tools.drill.feed import scenario_rows
from workers.tools.drill.fuzz import fuzz_feed
from workers.tools.drill.host_kill import (
    KillLog,
    RollTarget,
    kill_a_send,
    roll_violations,
    roll_with_kills,
)
from workers.tools.drill.hosts import WORKERS, HostProcesses
from workers.tools.drill.judge import Injected
from workers.tools.drill.net import FEED_HOST, WORKER_HOSTS, Network
from workers.tools.drill.observe import RunOutcome, observe
from workers.tools.drill.scenario import Scenario
from workers.tools.drill.services import Services

LEASE_MS = 3_000
"""The drills' lock lease: short, so that a partition of twice the lease fits a replay."""
FLEET_SETTINGS: Mapping[str, str] = {
    "TRADEFLEET_LOCK_TTL_MS": str(LEASE_MS),
    "TRADEFLEET_SWEEP_INTERVAL_S": "1",
    "TRADEFLEET_RECONCILE_POSITIONS_INTERVAL_S": "5",
    "TRADEFLEET_RECONCILE_ORDERS_INTERVAL_S": "30",
    "TRADEFLEET_LOG_LEVEL": "INFO",
}
"""What every process of a run gets besides the stores' addresses (the defaults otherwise:
the visibility timeout stays an hour, so the fleet must notice lost work by itself)."""
WORKERS_UP_S = 120.0
SETTLE_S = 240.0
CAUGHT_UP_S = 300.0
POLL_S = 0.1

_T = TypeVar("_T")


class OneRun:
    """One run of the scenario with one drill's faults (the ``Rig`` the drill reaches)."""

    def __init__(
        self,
        net: Network,
        services: Services,
        scenario: Scenario,
        drill: Drill,
        log_dir: Path,
        index: int,
        seed: int,
    ) -> None:
        self.net = net
        self.services = services
        self.scenario = scenario
        self.drill = drill
        self.rng = random.Random(seed * 1_000 + index)  # noqa: S311 - reproducible faults
        self.lease_s = LEASE_MS / 1000
        self.log_dir = log_dir / f"{index:02d}-{drill.name}"
        self.database = f"drill_{index}"
        self.database_url = services.database_url_for(self.database)
        self.env = {
            **FLEET_SETTINGS,
            **dict(drill.settings),
            "TRADEFLEET_REDIS_URL": services.redis_url,
            "TRADEFLEET_PAPER_BROKER_URL": services.broker_url,
            "TRADEFLEET_DATABASE_URL": self.database_url,
            "TRADEFLEET_DATA_DIR": str(self.log_dir / "data"),
        }
        self.settings = Settings.model_validate(grouped(self.env))
        self.hosts = HostProcesses(net, self.env, self.log_dir)
        self.sessions: dict[str, tuple[str, str, str]] = {}
        self._feed: subprocess.Popen[bytes] | None = None
        self._feed_started = 0.0
        self.faults = Fault(0, None)
        """What ``drill.inject`` returned."""
        self.unsettled: tuple[str, ...] = ()
        """Why the run had not settled at its deadline (empty: it settled)."""
        self.violations: tuple[str, ...] = ()
        """What the drill's own check found broken (two beats: a period fanned out twice)."""
        self.injected = Injected()
        """The bad entries the drill's feed published on purpose."""
        self.seed = seed
        self.kill_log = KillLog()
        self.remarks: list[str] = []
        """What the run says besides its figures (printed as it ends)."""
        self.rolls: list[RollTarget] = []
        self.app: Celery | None = None
        self.engine: Engine | None = None

    # ------------------------------------------------------------ the Rig

    def at(self, fraction: float) -> None:
        due = self._feed_started + fraction * self.scenario.seconds
        while time.monotonic() < due:
            time.sleep(min(POLL_S, max(0.0, due - time.monotonic())))

    def feed_running(self) -> bool:
        return self._feed is not None and self._feed.poll() is None

    def kill_a_send(self) -> int:
        assert self.app is not None and self.engine is not None, "called during run()"
        return kill_a_send(self.app, self.hosts, self.engine, self.kill_log, self._broker_held)

    def sessions_labels(self) -> set[str]:
        return set(self.sessions)

    def stale_sessions(self) -> set[str]:
        client = redis.Redis.from_url(self.settings.redis.url, socket_timeout=5)
        try:
            return {
                label
                for label, (sid, _, _) in self.sessions.items()
                if ReconcileMeta.from_json(
                    cast(bytes | None, client.hget(state_key(sid), RECONCILE_FIELD))
                ).stale
            }
        finally:
            client.close()

    def violated(self, what: str) -> None:
        self.violations += (what,)

    @contextlib.contextmanager
    def _broker_held(self) -> Iterator[None]:
        self.services.pause_broker()
        try:
            yield
        finally:
            self.services.resume_broker()

    def _roll(self, recovery: float | None) -> float | None:
        """The roll with its kills, once the replay was observed (the reference does not
        roll); ``recovery_s`` becomes the longest wait for work to go on after a kill (the
        replay's sends' kills included)."""
        assert self.app is not None, "called during run()"
        self.rolls = roll_with_kills(
            self.settings, self.app, self.hosts, self.sessions, self.scenario.end, self.kill_log
        )
        self.faults = Fault(len(self.kill_log.kills), self.faults.ended_at)
        self.violations += tuple(self.kill_log.violations())
        self.remarks.append(self.kill_log.summary())
        (self.log_dir / "kills.json").write_text(json.dumps(self.kill_log.as_json(), indent=1))
        if recovery is None:
            return None
        return max(recovery, self.kill_log.longest_s)

    # ------------------------------------------------------------ the run

    def run_in(self, net: Network) -> tuple[RunOutcome, Fault, float | None]:
        """``run`` on the services host. Interrupted (Ctrl-C, SIGTERM), the run's processes
        are stopped here, with their supervisor, before the network and the services are torn
        down: the run's own thread cannot be interrupted and would otherwise restart what the
        teardown kills, and keep PostgreSQL's clients connected."""
        try:
            return net.call_in(net.services_host, self.run)
        except BaseException:
            self.hosts.stop()
            raise

    def run(self) -> tuple[RunOutcome, Fault, float | None]:
        """What the run ended with, the faults injected, and ``recovery_s``. Called in a
        thread inside the services host's namespace (``Network.call_in``): the runner reads
        the stores as a process on that host would, whatever a drill does to the links."""
        self._fresh_stores()
        client = redis.Redis.from_url(self.settings.redis.url, socket_timeout=5)
        broker_client = redis.Redis.from_url(self.env["TRADEFLEET_PAPER_BROKER_URL"])
        engine = self.engine = make_engine(self.database_url)
        app = self.app = create_app(self.settings)
        try:
            self.hosts.start_workers()
            for host in self.drill.beats:
                self.hosts.start_beat(host)
            self._wait_workers(app)
            self._create_sessions()
            if self.drill.impaired:
                for host in (*WORKER_HOSTS, FEED_HOST):
                    self.net.impair(host)
            fuzz_seed = self.seed if self.drill.fuzz else None
            if fuzz_seed is not None:
                self.injected = self._injected(fuzz_seed)
            self._feed = self.hosts.start_feed(self.scenario.name, fuzz_seed)
            self._feed_started = time.monotonic()
            fault = self.drill.inject(self)
            self.faults = Fault(max(fault.count, self.faults.count), fault.ended_at)
            ended = self.faults.ended_at
            if ended is None:
                self._wait_feed()
                ended = time.monotonic()
            recovery = self._caught_up(client, ended)
            self._wait_feed()
            self.unsettled = self._settle(client, engine)
            if self.drill.impaired:
                for host in (*WORKER_HOSTS, FEED_HOST):
                    self.net.clear(host)
            broker = build_broker("paper", {}, self.settings)
            assert isinstance(broker, PaperBroker)
            outcome = observe(
                self.sessions,
                client,
                engine,
                broker,
                broker_client,
                self.settings.state.lock_ttl_ms,
            )
            if self.drill.roll:
                recovery = self._roll(recovery)
                store = StateStore(client, self.settings.state.lock_ttl_ms)
                self.violations += tuple(roll_violations(self.rolls, engine, store, broker))
            self._write_stats(client)
            if len(self.drill.beats) > 1:
                refused, twice = self._one_fan_out_per_period(client)
                self.violations += twice
                if self.drill.faults_are_refusals:
                    self.faults = refused
            (self.log_dir / "outcome.json").write_text(json.dumps(outcome.as_json(), indent=1))
            _write_events(engine, self.log_dir / "events.json")
            return outcome, self.faults, recovery
        finally:
            self.hosts.stop()
            app.close()
            engine.dispose()
            client.close()
            broker_client.close()

    def _fresh_stores(self) -> None:
        for url in (self.services.redis_url, self.services.broker_url):
            flush = redis.Redis.from_url(url)
            flush.flushall()
            flush.close()
        self.services.create_database(self.database)
        upgrade(self.database_url)

    def _wait_workers(self, app: Celery) -> None:
        expected = {f"{h}-{w.role}@drill" for h in WORKER_HOSTS for w in WORKERS}
        deadline = time.monotonic() + WORKERS_UP_S
        seen: set[str] = set()
        while seen != expected:
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(expected - seen))
                raise ServiceUnavailable(
                    f"workers did not answer within {WORKERS_UP_S:.0f}s: {missing}"
                )
            try:
                replies = app.control.ping(timeout=1.0) or []
            except redis.ConnectionError:
                # The first broadcast after the Redis of a previous run was killed reads a
                # connection kombu kept to it (it reconnects on the next): ask again.
                continue
            for reply in replies:
                seen |= set(reply) & expected

    def _create_sessions(self) -> None:
        for spec in self.scenario.sessions:
            state = create_session(
                self.settings,
                NewSession(
                    name=f"drill-{spec.label}",
                    account=spec.account,
                    product=spec.product,
                    contract=spec.contract,
                    strategy=spec.strategy,
                    strategy_args=dict(spec.args),
                    timeframe=spec.timeframe,
                    warmup_until=self.scenario.start,
                ),
            )
            self.sessions[spec.label] = (state.session.id, spec.account, spec.contract)

    def _wait_feed(self) -> None:
        assert self._feed is not None
        limit = 3 * self.scenario.seconds + CAUGHT_UP_S
        code = self._feed.wait(timeout=max(1.0, self._feed_started + limit - time.monotonic()))
        if code != 0:
            raise ServiceUnavailable(
                f"the drill feed exited with {code}; its log: {self.log_dir / 'feed.log'}"
            )

    def _caught_up(self, client: redis.Redis, since: float) -> float | None:
        """Seconds from ``since`` until every session had read every tick its stream held
        then (the stream's last id read now, right after the fault); None if they had not
        within ``CAUGHT_UP_S``."""
        targets = {
            sid: _retry(partial(_last_id, client, contract))
            for sid, _, contract in self.sessions.values()
        }
        deadline = time.monotonic() + CAUGHT_UP_S
        while time.monotonic() < deadline:
            behind = [
                sid
                for sid, target in targets.items()
                if _id(_retry(partial(_cursor, client, sid))) < _id(target)
            ]
            if not behind:
                return time.monotonic() - since
            time.sleep(POLL_S)
        return None

    def _settle(self, client: redis.Redis, engine: Any) -> tuple[str, ...]:
        """Until the run settled; why not, when it has not at the deadline."""
        broker = build_broker("paper", {}, self.settings)
        deadline = time.monotonic() + SETTLE_S
        why: list[str] = []
        while time.monotonic() < deadline:
            why = _retry(lambda: self._unsettled(client, engine, broker))
            if not why:
                return ()
            time.sleep(POLL_S * 2)
        return tuple(why)

    def _injected(self, seed: int) -> Injected:
        """What the fuzzed plan the feed publishes must leave counted (the same plan: the
        same entries, the same seed)."""
        plan = fuzz_feed(scenario_rows(self.scenario, self.settings), seed)
        readers: dict[str, int] = {}
        per_session = {}
        for label, (_, _, contract) in self.sessions.items():
            readers[contract] = readers.get(contract, 0) + 1
            per_session[label] = plan.per_reader.get(contract, {})
        self.faults = Fault(plan.faults, None)
        return Injected(per_session, plan.rejected_total(readers))

    def _unsettled(self, client: redis.Redis, engine: Any, broker: Any) -> list[str]:
        why = []
        for label, (sid, account, contract) in self.sessions.items():
            cursor, orders, raw = cast(
                list[bytes | None],
                client.hmget(state_key(sid), [CURSOR_FIELD, "orders", PROGRESS_FIELD]),
            )
            last = _last_id(client, contract)
            if (cursor or b"").decode() != last:
                why.append(f"{label}: cursor {cursor!r} before {last}")
            if orders and decode_field("orders", orders.decode()):
                why.append(f"{label}: orders in flight")
            if TickProgress.from_json(None if raw is None else raw.decode()).stops_out:
                why.append(f"{label}: a touched stop awaits its fill")
            if unsettled_order_count(engine, sid):
                why.append(f"{label}: order rows not final")
            position = _position(client, sid)
            held = broker.positions(QueryPositions(account)).get(contract, 0)
            if position != held:
                why.append(f"{label}: position {position}, broker {held}")
        return why

    def _one_fan_out_per_period(self, client: redis.Redis) -> tuple[Fault, tuple[str, ...]]:
        """Two beats: how many fan-outs the guard refused (the second beat's, the faults), and
        every period that was fanned out twice (none, or the drill fails)."""
        raw = cast(dict[bytes, bytes], client.hgetall(STATS_KEY))
        stats = {k.decode(): int(v) for k, v in raw.items()}
        refused = sum(n for name, n in stats.items() if name.endswith(":skipped"))
        violations = []
        for job in ("positions", "orders"):
            won = [int(i) for i in cast(list[bytes], client.lrange(won_key(job), 0, -1))]
            twice = sorted(i for i in set(won) if won.count(i) > 1)
            if twice:
                violations.append(f"{job}: periods fanned out twice: {twice[:5]}")
        if not refused:
            violations.append("the second beat never competed for a period")
        return Fault(refused, None), tuple(violations)

    def _write_stats(self, client: redis.Redis) -> None:
        stats = cast(dict[bytes, bytes], client.hgetall(STATS_KEY))
        path = self.log_dir / "beat-stats.json"
        path.write_text(json.dumps({k.decode(): int(v) for k, v in stats.items()}))


def _write_events(engine: Engine, path: Path) -> None:
    """The run's events (what the fleet said happened), for the log folder."""
    with Session(engine) as db:
        rows = db.scalars(select(EventRow).order_by(EventRow.id)).all()
    path.write_text(
        json.dumps(
            [[r.created_at.isoformat(), r.session_id, r.kind, r.severity, r.message] for r in rows],
            indent=1,
        )
    )


def _position(client: redis.Redis, sid: str) -> int:
    raw = cast(bytes | None, client.hget(state_key(sid), "open_position"))
    if not raw:
        return 0
    held = decode_field("open_position", raw.decode())
    return 0 if held is None else int(held.quantity)


def _last_id(client: redis.Redis, contract: str) -> str:
    entries = cast(list[Any], client.xrevrange(stream_key(contract), count=1))
    return entries[0][0].decode() if entries else "0-0"


def _cursor(client: redis.Redis, sid: str) -> str:
    raw = cast(bytes | None, client.hget(state_key(sid), CURSOR_FIELD))
    return raw.decode() if raw else "0-0"


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _retry(read: Callable[[], _T], timeout_s: float = 60.0) -> _T:
    """``read()``, again while a store cannot be reached (a drill restarts them)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return read()
        except (redis.RedisError, sqlalchemy.exc.OperationalError, ServiceUnavailable):
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL_S * 5)
