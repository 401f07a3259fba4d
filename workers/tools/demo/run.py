"""``tradefleet demo``: real sessions trading the real data, end to end, on the paper broker
or (``--broker tradovate-local``) through the Tradovate adapter against the local Tradovate
server.

It starts what it needs (Redis if none answers and one is installed, migrations, a Celery
worker and beat as child processes; with ``tradovate-local`` the local server and the
user-sync listener too), creates three sessions, replays ES and GC as fast as it can, shows
live progress, and ends with a summary and a report. Children stop on exit and on Ctrl-C.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import redis

from models.meta import CURSOR_FIELD, PROGRESS_FIELD
from models.progress import TickProgress
from trading.calendar import roll_date
from trading.exceptions import BadInput, ServiceUnavailable
from workers.brokers.base import AccountManager
from workers.brokers.commands import QueryPositions
from workers.brokers.registry import build_broker
from workers.calendars.exchange_holidays import exchange_holidays
from workers.celery_app import create_app
from workers.connections import redis_client
from workers.db.engines import engine_for, upgrade
from workers.db.order_rows import count_rows, unsettled_order_count
from workers.db.roll_rows import get_roll
from workers.db.session_rows import get_session_row, list_session_rows
from workers.feeds.replay import ReplayConfig, ReplaySource
from workers.feeds.runner import run_feed
from workers.rolls.chain import start_roll
from workers.runtime import Runtime, make_publisher
from workers.sessions.create import NewSession, create_session
from workers.settings import Settings
from workers.state.store import StateStore
from workers.ticks.keys import stream_key, subscribers_key
from workers.tools.demo.local_tradovate import (
    LocalTradovate,
    start_listener,
    start_local_tradovate,
)
from workers.tools.demo.report import write_report
from workers.tools.demo.summary import SessionSummary
from workers.tools.processes import (
    ChildProcesses,
    celery_beat_argv,
    celery_worker_argv,
    ensure_redis,
)

DEMO_PREFIX = "demo-"
BROKERS = ("paper", "tradovate-local")
"""The demo's broker choices: the paper broker, or Tradovate's adapter against the local
Tradovate server the demo starts (``workers.tools.demo.local_tradovate``)."""
DONE_TIMEOUT_S = 150.0


@dataclass(frozen=True, slots=True)
class DemoSession:
    """One session the demo runs."""

    label: str
    product: str
    contract: str
    strategy: str
    args: dict[str, str]
    timeframe: str


@dataclass(frozen=True, slots=True)
class DemoFeed:
    product: str
    contract: str
    date_from: date
    date_to: date


SESSIONS: tuple[DemoSession, ...] = (
    DemoSession("es-sma", "ES", "ESZ13", "sma_cross", {"fast": "10", "slow": "30"}, "5m"),
    DemoSession("es-breakout", "ES", "ESZ13", "breakout", {"lookback": "20"}, "5m"),
    DemoSession("gc-breakout", "GC", "GCZ13", "breakout", {"lookback": "30"}, "1m"),
)
FEEDS: tuple[DemoFeed, ...] = (
    DemoFeed("ES", "ESZ13", date(2013, 10, 7), date(2013, 12, 3)),
    DemoFeed("GC", "GCZ13", date(2013, 10, 7), date(2013, 10, 9)),
)
ROLL_FROM, ROLL_TO = "ESZ13", "ESH14"
PRICING_DAY = date(2013, 12, 18)
"""The first day after the roll date with minutes of both contracts: the roll's orders, decided
on the roll date (2013-12-12, which the data set has no minutes of), fill on its first prints."""
AFTER_ROLL = DemoFeed("ES", ROLL_TO, PRICING_DAY, date(2013, 12, 20))
ROLL_STALL_S = 120.0
"""The demo waits for its rolls as long as they make progress (a roll's recorded step or
status, or its session's fills, change); it gives up after this long without any."""
ROLL_FINISHED = frozenset({"done", "failed", "needs_operator", "aborted"})
REPLAY_BATCH = 2000
LIVE_BATCH = 250
"""A broker that works orders by itself (``tradovate-local``) fills them against the prints it
has seen: the demo publishes this many ticks at a time, each batch once the sessions have read
the last one and their orders have reached the broker, as a live market would never outrun the
fleet's orders by days (the paper broker fills as of each order's decision instead). Within a
batch the server has seen every print before an order decided in it arrives: a market order
fills at the batch's last print, and a stop starts working after it, so a touch the session
sees later in that batch is one the server never fills (the session then takes the position
as closed while the broker still holds it). Measured on the demo: 500 ticks, 226 s and ~46
such touches; 250 ticks, 289 s and ~10."""


@dataclass(frozen=True, slots=True)
class RollSummary:
    """One ES session's roll, as the demo reports it."""

    session: str
    session_id: str
    from_contract: str
    to_contract: str
    quantity: int
    status: str
    close_price: str | None
    open_price: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "session_id": self.session_id,
            "from": self.from_contract,
            "to": self.to_contract,
            "quantity": self.quantity,
            "status": self.status,
        }

    def describe(self) -> str:
        prices = ""
        if self.close_price is not None and self.open_price is not None:
            close, open_ = _plain(self.close_price), _plain(self.open_price)
            prices = f", closed at {close}, opened at {open_}"
        return (
            f"rolled {self.quantity} {self.from_contract} -> {self.to_contract} "
            f"({self.status}{prices})"
        )


@dataclass(frozen=True, slots=True)
class DemoResult:
    sessions: list[SessionSummary]
    ticks_published: int
    wall_seconds: float
    report: Path | None
    rolls: list[RollSummary]
    broker: str = "paper"
    broker_state: Path | None = None
    """``tradovate-local``: the server's own state (``/_local/state``) as the demo ended."""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "broker": self.broker,
            "sessions": [s.as_json() for s in self.sessions],
            "rolls": [r.as_json() for r in self.rolls],
            "ticks_published": self.ticks_published,
            "wall_seconds": round(self.wall_seconds, 2),
            "report": None if self.report is None else str(self.report),
        }
        if self.broker_state is not None:
            out["broker_state"] = str(self.broker_state)
        return out


Progress = Callable[[str, int, list[SessionSummary]], None]


def feeds_since(since: date | None) -> tuple[DemoFeed, ...]:
    """The demo's feeds, ES from ``since`` (a shorter run) instead of its first day; GC as it
    is (its three days are the data set's). ``since`` must leave ES at least one day before
    its last (``BadInput``)."""
    if since is None:
        return FEEDS
    es = next(feed for feed in FEEDS if feed.product == "ES")
    if not es.date_from <= since < es.date_to:
        raise BadInput(
            f"--since {since} is outside the ES replay ({es.date_from} to {es.date_to}, "
            "at least one day before its end)"
        )
    return tuple(replace(feed, date_from=since) if feed is es else feed for feed in FEEDS)


class Demo:
    """One demo run; ``run`` does everything and returns the summary."""

    def __init__(
        self,
        settings: Settings,
        children: ChildProcesses,
        broker: str = "paper",
        since: date | None = None,
    ) -> None:
        if broker not in BROKERS:
            raise BadInput(f"unknown demo broker {broker!r} (known: {', '.join(BROKERS)})")
        self.feeds = feeds_since(since)
        self.settings = settings
        self.children = children
        self.broker = broker
        self.run_id = secrets.token_hex(3)
        self.client: redis.Redis | None = None
        self.session_ids: list[str] = []
        self.server: LocalTradovate | None = None
        self._brokers: dict[str, AccountManager] = {}

    def run(self, progress: Progress, on_ready: Callable[[], None] | None = None) -> DemoResult:
        """Everything, start to summary. ``on_ready`` is called once Redis, the migrations, the
        workers and the sessions are up, before the replay (``demo --web`` starts the console
        there, so the sessions can be watched trading from their first tick)."""
        started = time.monotonic()
        settings = self.settings
        progress("starting Redis, migrations and workers", 0, [])
        ensure_redis(settings.redis.url, self.children)
        upgrade(settings.sqlalchemy_url)
        self.client = redis_client(settings.redis.url)
        self._reset_demo_streams()
        accounts = [self._account(spec) for spec in SESSIONS]
        if self.broker == "tradovate-local":
            progress("starting the local Tradovate server", 0, [])
            self.server, self.settings = start_local_tradovate(self.children, settings, accounts)
        self._start_workers()
        if self.server is not None:
            start_listener(self.children, accounts)
        for spec in SESSIONS:
            self.session_ids.append(self._create(spec))
        if on_ready is not None:
            on_ready()
        published = self._replay(progress, self.feeds)
        self._wait_done(progress, published)
        rolls = self._roll(progress, published)
        published += 2 + self._replay(progress, (AFTER_ROLL,), skip=1, base=published + 2)
        self._wait_done(progress, published)
        summaries = self.summaries()
        lines = {r.session_id: r.describe() for r in rolls}
        moves = {r.session_id: (r.from_contract, r.to_contract) for r in rolls}
        report = write_report(
            self.settings, self.client, summaries, self.report_dir(), lines, moves
        )
        wall = time.monotonic() - started
        return DemoResult(
            summaries, published, wall, report, rolls, self.broker, self._save_broker_state()
        )

    def _save_broker_state(self) -> Path | None:
        """The local server's own state as the demo ends, next to the logs."""
        if self.server is None:
            return None
        path = self.children.log_dir / f"tradovate-local-state-{self.run_id}.json"
        path.write_text(json.dumps(self.server.state(), default=str, indent=1))
        return path

    def report_dir(self) -> Path:
        return self.settings.paths.data_dir / "reports" / f"demo-{self.run_id}"

    def _reset_demo_streams(self) -> None:
        """The demo replays old data into fresh streams; only demo sessions may read them."""
        assert self.client is not None
        engine = engine_for(self.settings.sqlalchemy_url)
        names = {row.id: row.name for row in list_session_rows(engine)}
        for feed in FEEDS:
            subs_key = subscribers_key(feed.contract)
            members = [m.decode() for m in self.client.smembers(subs_key)]  # type: ignore[union-attr]
            others = [m for m in members if not names.get(m, DEMO_PREFIX).startswith(DEMO_PREFIX)]
            if others:
                raise BadInput(
                    f"{len(others)} non-demo session(s) read {feed.contract}; the demo replays "
                    "2013 data into that stream: use another TRADEFLEET_REDIS_URL for the demo"
                )
            self.client.delete(subs_key, stream_key(feed.contract))

    def _start_workers(self) -> None:
        queues = (
            self.settings.queues.ticks,
            self.settings.queues.orders,
            self.settings.queues.rolls,
            self.settings.queues.default,
        )
        self.children.start("worker", celery_worker_argv(f"demo-{self.run_id}@%h", queues, 2))
        schedule = self.children.log_dir / "celerybeat-schedule"
        self.children.start("beat", celery_beat_argv(schedule))

    def _account(self, spec: DemoSession) -> str:
        return f"DEMO-{self.run_id}-{spec.label}"

    def _create(self, spec: DemoSession) -> str:
        state = create_session(
            self.settings,
            NewSession(
                name=f"{DEMO_PREFIX}{self.run_id}-{spec.label}",
                account=self._account(spec),
                broker="tradovate" if self.broker == "tradovate-local" else "paper",
                product=spec.product,
                contract=spec.contract,
                strategy=spec.strategy,
                strategy_args=spec.args,
                timeframe=spec.timeframe,
            ),
        )
        return state.session.id

    def _replay(
        self, progress: Progress, feeds: tuple[DemoFeed, ...], skip: int = 0, base: int = 0
    ) -> int:
        """Publish every feed (each without its first ``skip`` ticks); returns how many."""
        assert self.client is not None
        publisher = make_publisher(self.client, self.settings, create_app(self.settings))
        total = 0
        for feed in feeds:
            config = ReplayConfig(feed.product, feed.contract, feed.date_from, feed.date_to)
            source = ReplaySource(config, self.settings.paths.market_data_dir)
            offset = base + total

            def report(count: int, offset: int = offset, contract: str = feed.contract) -> None:
                progress(f"replaying {contract}", offset + count, self.summaries(brokers=False))
                if self.live:
                    self._catch_up()

            ticks = islice(source.ticks(), skip, None)
            batch = LIVE_BATCH if self.live else REPLAY_BATCH
            total += run_feed(ticks, publisher, None, batch=batch, on_progress=report).published
        return total

    def _roll(self, progress: Progress, published: int) -> list[RollSummary]:
        """Roll every ES session ESZ13 -> ESH14, decided on the roll date; the first print of
        each contract on ``PRICING_DAY`` fills the roll's orders (and prices a flat session's
        back-adjustment). The prints are published once every roll has sent its close (the
        strategy stopped at ``begin``; the close cancelled the old contract's protective stop
        as of the roll's decision), so that no strategy runs on the old contract past the roll
        date and the print fills the close, never the old stop in its place (which would leave
        the roll's close nothing to close: ``needs_operator``)."""
        assert self.client is not None
        rt = Runtime(self.settings)
        app = create_app(self.settings)
        when = datetime.combine(roll_date(ROLL_FROM, exchange_holidays()), datetime.min.time(), UTC)
        rolling = [
            (sid, start_roll(rt, app, sid, ROLL_TO, decided_at=when).id)
            for sid, spec in zip(self.session_ids, SESSIONS, strict=True)
            if spec.contract == ROLL_FROM
        ]
        phase = f"rolling {ROLL_FROM} -> {ROLL_TO} (decided on {when.date()})"
        self._while_rolling(
            progress,
            phase,
            published,
            rolling,
            lambda: all(self._closing(roll_id) for _, roll_id in rolling),
        )
        publisher = make_publisher(self.client, self.settings, app)
        for contract in (ROLL_FROM, ROLL_TO):
            config = ReplayConfig("ES", contract, PRICING_DAY, PRICING_DAY)
            first = next(iter(ReplaySource(config, self.settings.paths.market_data_dir).ticks()))
            publisher.publish(contract, [first])
        self._while_rolling(
            progress,
            phase,
            published + 2,
            rolling,
            lambda: all(self._roll_status(roll_id) in ROLL_FINISHED for _, roll_id in rolling),
        )
        names = dict(
            zip(self.session_ids, (self._name(sid) for sid in self.session_ids), strict=True)
        )
        out = []
        for sid, roll_id in rolling:
            row = get_roll(engine_for(self.settings.sqlalchemy_url), roll_id)
            assert row is not None
            out.append(
                RollSummary(
                    session=names[sid],
                    session_id=sid,
                    from_contract=row.from_contract,
                    to_contract=row.to_contract,
                    quantity=row.quantity,
                    status=row.status,
                    close_price=None if row.close_fill_price is None else str(row.close_fill_price),
                    open_price=None if row.open_fill_price is None else str(row.open_fill_price),
                )
            )
        return out

    def _closing(self, roll_id: int) -> bool:
        """Whether the roll recorded its close done (its close sent, or a flat roll past it)
        or has finished."""
        row = get_roll(engine_for(self.settings.sqlalchemy_url), roll_id)
        return row is not None and (
            row.status in ROLL_FINISHED or row.step not in {"begin", "close"}
        )

    def _roll_status(self, roll_id: int) -> str:
        row = get_roll(engine_for(self.settings.sqlalchemy_url), roll_id)
        return "" if row is None else row.status

    def _name(self, session_id: str) -> str:
        assert self.client is not None
        return (
            StateStore(self.client, self.settings.state.lock_ttl_ms).load(session_id).session.name
        )

    def _while_rolling(
        self,
        progress: Progress,
        phase: str,
        published: int,
        rolling: list[tuple[str, int]],
        done: Callable[[], bool],
    ) -> None:
        """Wait until ``done()`` for as long as the rolls (session id, roll id) make progress,
        showing each roll's step; one line after ``ROLL_STALL_S`` without progress."""
        seen: tuple[object, ...] = ()
        moved_at = time.monotonic()
        while not done():
            summaries = self.summaries(brokers=False)
            steps = self._roll_steps(rolling)
            fills = {s.id: s.fills for s in summaries}
            now_seen = (steps, tuple(fills[sid] for sid, _ in rolling))
            if now_seen != seen:
                seen, moved_at = now_seen, time.monotonic()
            elif time.monotonic() - moved_at > ROLL_STALL_S:
                raise ServiceUnavailable(
                    f"the demo's rolls made no progress for {ROLL_STALL_S:.0f}s "
                    f"({', '.join(steps)}); worker log: {self.children.log_dir / 'worker.log'}"
                )
            progress(f"{phase}: {', '.join(steps)}", published, summaries)
            time.sleep(0.2)

    def _roll_steps(self, rolling: list[tuple[str, int]]) -> tuple[str, ...]:
        """Each roll as ``roll <id> <step>`` (its status when it is not running)."""
        engine = engine_for(self.settings.sqlalchemy_url)
        out = []
        for _, roll_id in rolling:
            row = get_roll(engine, roll_id)
            where: str = "missing" if row is None else row.step
            if row is not None and row.status != "running":
                where = row.status
            out.append(f"roll {roll_id} {where}")
        return tuple(out)

    def _wait_done(self, progress: Progress, published: int) -> None:
        deadline = time.monotonic() + DONE_TIMEOUT_S
        agreed: list[SessionSummary] | None = None
        while time.monotonic() < deadline:
            summaries = self.summaries()
            progress("draining ticks and orders", published, summaries)
            if self._drained(stops=not self.live) and all(
                s.position == s.broker_position for s in summaries
            ):
                if not self.live or summaries == agreed:
                    return
                agreed = summaries  # a live broker: the same answer twice, a beat apart
            else:
                agreed = None
            time.sleep(0.25)
        raise ServiceUnavailable(
            f"the demo did not finish within {DONE_TIMEOUT_S:.0f}s; worker log: "
            f"{self.children.log_dir / 'worker.log'}"
        )

    @property
    def live(self) -> bool:
        """Whether the broker works resting orders by itself, against the prints it sees."""
        return self.server is not None

    def _catch_up(self) -> None:
        """Wait (bounded) until every session has read its stream to the end and has no
        order in flight (``LIVE_BATCH``)."""
        deadline = time.monotonic() + DONE_TIMEOUT_S
        while not self._drained(stops=False):
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"the demo's sessions did not catch up within {DONE_TIMEOUT_S:.0f}s; "
                    f"worker log: {self.children.log_dir / 'worker.log'}"
                )
            time.sleep(0.05)

    def _drained(self, *, stops: bool = True) -> bool:
        """Every session has read its stream to the end, has no order in flight, and (with
        ``stops``) has no protective stop it saw touched whose fill is not applied yet (the
        paper broker fills such a stop at its next poll: a summary taken before would miss
        that fill). A live broker's stop fills only if ITS market reached the stop while the
        stop worked there: the one the session saw touched may never fill, so with a live
        broker only the positions tell (``_wait_done``)."""
        assert self.client is not None
        engine = engine_for(self.settings.sqlalchemy_url)
        for sid in self.session_ids:
            fields = [CURSOR_FIELD, "candle_key", PROGRESS_FIELD]
            state = self.client.hmget(f"tf:{{{sid}}}:state", fields)
            cursor, candle_key, raw = (v.decode() if v else "" for v in state)  # type: ignore[union-attr]
            if stops and TickProgress.from_json(raw).stops_out:
                return False
            instrument = json.loads(candle_key).split(":", 1)[0]
            last = self.client.xrevrange(stream_key(instrument), count=1)
            if last and last[0][0].decode() != cursor:  # type: ignore[index]
                return False
            if unsettled_order_count(engine, sid):
                return False
        return True

    def summaries(self, *, brokers: bool = True) -> list[SessionSummary]:
        assert self.client is not None
        store = StateStore(self.client, self.settings.state.lock_ttl_ms)
        engine = engine_for(self.settings.sqlalchemy_url)
        out = []
        for sid in self.session_ids:
            state = store.load(sid)
            raw = self.client.hget(f"tf:{{{sid}}}:state", PROGRESS_FIELD)
            tick_progress = TickProgress.from_json(raw.decode() if raw else None)  # type: ignore[union-attr]
            orders, fills = count_rows(engine, sid)
            info = state.session
            position = 0 if state.open_position is None else state.open_position.quantity
            broker_position = position
            if brokers:
                broker_position = (
                    self._broker(sid).positions(QueryPositions(info.account)).get(info.contract, 0)
                )
            out.append(
                SessionSummary(
                    id=sid,
                    name=info.name,
                    account=info.account,
                    product=info.product,
                    contract=info.contract,
                    ticks_processed=tick_progress.ticks_processed,
                    ticks_rejected=tick_progress.ticks_rejected,
                    candles_closed=tick_progress.candles_closed,
                    orders=orders,
                    fills=fills,
                    position=position,
                    broker_position=broker_position,
                    realized_pnl=_usd(state.account_pnl_info.realized),
                    commissions=_usd(state.account_pnl_info.commissions),
                    portfolio_heat=str(state.portfolio_heat),
                    portfolio_heat_warned=state.portfolio_heat_warned,
                    portfolio_heat_blocked=state.portfolio_heat_blocked,
                )
            )
        return out

    def _broker(self, sid: str) -> AccountManager:
        """The session's own broker (its SQL row's account manager, built once)."""
        broker = self._brokers.get(sid)
        if broker is None:
            row = get_session_row(engine_for(self.settings.sqlalchemy_url), sid)
            if row is None:
                raise BadInput(f"session {sid} has no row")
            args = dict(row.account_manager_args)
            broker = self._brokers[sid] = build_broker(row.account_manager, args, self.settings)
        return broker


CENT = Decimal("0.01")


def _usd(amount: Decimal) -> str:
    """An amount in USD with cents, whatever the exponent its arithmetic left (a price read back
    from the database carries eight decimals): ``-3600.00000000`` → ``-3600.00``; an amount
    finer than a cent keeps its digits."""
    cents = amount.quantize(CENT)
    return str(cents if cents == amount else amount.normalize())


def _plain(text: str) -> str:
    """A price without the database's trailing zeros: ``1780.00000000`` → ``1780``."""
    return text.rstrip("0").rstrip(".") if "." in text else text
