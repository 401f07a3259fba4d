"""The console's read model of the fleet: every session with its figures and status, and the
totals per account (one session's page: ``session_view``; accounts: ``account_view``; rolls and
events: ``log_view``).

Everything here only reads: the SQL rows, the sessions' state hashes, the account risk hashes
(``RiskBook.read``, never ``refresh``, which rewrites flags), the feeds' stall flags, the
instrument streams' last ids and the broker's position as reconciliation last saw it
(``workers.state.broker_seen``); no broker is asked. A fleet snapshot costs three SQL queries
(the sessions, the unfinished rolls, the newest events) and four Redis round trips (the state
hashes; the stall flags and streams; the broker's positions; the risk books), whatever the
fleet's size; the accounts view adds two SQL statements (the known accounts) and one round trip.

Figures of one session (``SessionView``):

- ``position``: the state's ``open_position`` quantity in the session's current contract
  (signed, positive long); ``broker``: the broker's quantity of the account in that contract
  as last read by reconciliation, with its age; the comparison (``broker_check``) is against
  the sum of every session holding state on that account and contract
  (``trading.fleet_view.broker_check``).
- ``realized``, ``unrealized``, ``commissions``: the state's ``account_pnl_info`` (realized
  gross of commissions; unrealized marked at the session's last tick).
- ``risk``: the session's open risk in its account's risk book; ``heat``: that risk over the
  account's equity (the session's part of its account's heat, quantized to ``HEAT_QUANTUM``),
  0 while the book holds no equity. An account's heat total is the sum of the shown parts.
- ``last_tick_at``: the data time of the last tick the session folded (``TickProgress.last_ms``:
  the exchange's time of that print); ``tick_age_s``: wall time now minus that data time, in
  whole seconds (a replayed session's age is the age of its data).
- ``tick_lag_ms``: how far the session is behind its instrument stream, in data time: the
  data time of the stream's newest tick minus that of the newest tick the session has read
  (its cursor; stream ids are data-time milliseconds), 0 when it has read them all; for a
  session that has read none of the stream yet, from the stream's first tick. None while
  the stream is empty. The drainer records no wall time of when it
  processed a tick (only the bench's latency probe does), so a wall-clock processing lag is
  not known here; a session that keeps up shows 0 whatever the feed's own delay.
- ``candles_closed``: ``TickProgress.candles_closed``; ``last_event``: its newest event row.
- ``status``/``reasons``: ``trading.fleet_view.session_status``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from models.codec import decode_field, state_key
from models.meta import CURSOR_FIELD, LAST_FILL_FIELD, PROGRESS_FIELD, RECONCILE_FIELD
from models.progress import TickProgress
from models.state import (
    ContractDetails,
    OpenPosition,
    PnlInfo,
)
from models.tables import (
    UNFINISHED_ROLL_STATUSES,
    EventRow,
    RollRow,
    TradingSessionRow,
)
from trading.exceptions import BadInput
from trading.fleet_view import (
    AccountTotals,
    BrokerCheck,
    SessionFigures,
    Status,
    StatusInputs,
    account_totals,
    broker_check,
    session_status,
)
from trading.market import EPOCH
from trading.market_hours import globex_open
from trading.reconcile import ReconcileMeta
from workers.calendars.exchange_holidays import exchange_holidays
from workers.db.session_rows import list_session_rows
from workers.feeds.registry import prints_live
from workers.risk.book import AccountRisk, account_risk_of, risk_key
from workers.risk.feed_stall import stall_key
from workers.runtime import Runtime
from workers.state.broker_seen import BrokerSeen, read_broker_seen
from workers.ticks.keys import stream_key

STALE_AFTER = timedelta(seconds=120)
"""No tick for longer than this while the market is open: the session is stale."""
HEAT_QUANTUM = Decimal("0.000001")
"""Heat (a fraction of equity) is shown, and added up, to six places."""

_FIELDS = (
    "session",
    "trading",
    "rolling",
    "open_position",
    "account_pnl_info",
    "contract_details",
    PROGRESS_FIELD,
    CURSOR_FIELD,
    LAST_FILL_FIELD,
    RECONCILE_FIELD,
)
"""The state-hash fields a fleet row reads (one HMGET per session)."""

MarketOpen = Callable[[datetime], bool]


def market_open(now: datetime) -> bool:
    """Whether Globex trades at ``now``, exchange holidays included where the calendar has
    the year (else without them)."""
    try:
        return globex_open(now, exchange_holidays())
    except BadInput:
        return globex_open(now)


# --------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class BrokerView:
    quantity: int
    average_price: Decimal | None
    fills_pending: int
    as_of: datetime
    age_s: int


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    created_at: datetime
    session_id: str | None
    kind: str
    severity: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionView:
    """One row of the fleet page (module docstring)."""

    session_id: str
    name: str
    account: str
    product: str
    contract: str
    timeframe: str
    strategy: str
    sql_status: str
    status: Status
    reasons: tuple[str, ...]
    has_state: bool
    """Whether its state hash is in Redis: without it the figures below are zeros, not read."""
    position: int
    position_contract: str
    average_price: Decimal | None
    stop_price: Decimal | None
    broker: BrokerView | None
    broker_check: BrokerCheck
    group_sessions: int
    """Sessions holding state on this account and contract (the broker's one position is
    theirs together), this one included."""
    group_position: int
    """Their summed position: what the broker's is compared with."""
    realized: Decimal
    unrealized: Decimal
    commissions: Decimal
    risk: Decimal
    heat: Decimal
    last_tick_at: datetime | None
    tick_age_s: int | None
    tick_lag_ms: int | None
    candles_closed: int
    ticks_processed: int
    last_event: EventView | None

    def figures(self) -> SessionFigures:
        return SessionFigures(
            self.account,
            self.position,
            self.realized,
            self.unrealized,
            self.commissions,
            self.risk,
            self.heat,
        )


@dataclass(frozen=True, slots=True)
class FleetView:
    as_of: datetime
    sessions: list[SessionView]
    totals: list[AccountTotals]


@dataclass(frozen=True, slots=True)
class _Held:
    """What one session's state hash holds, as a fleet row needs it (None: no state)."""

    trading: bool
    rolling: bool
    contract: str
    position: OpenPosition
    pnl: PnlInfo
    progress: TickProgress
    cursor: str
    last_fill: datetime | None
    reconcile: ReconcileMeta


def _text(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else raw


def _held(values: Sequence[bytes | None]) -> _Held | None:
    raw = dict(zip(_FIELDS, (_text(v) for v in values), strict=True))
    if raw["session"] is None:
        return None
    details: ContractDetails = decode_field("contract_details", cast(str, raw["contract_details"]))
    position: OpenPosition | None = decode_field("open_position", raw["open_position"] or "null")
    last_fill = raw[LAST_FILL_FIELD]
    return _Held(
        trading=bool(decode_field("trading", raw["trading"] or "true")),
        rolling=bool(decode_field("rolling", raw["rolling"] or "false")),
        contract=details.symbol,
        position=position if position is not None else OpenPosition(details.symbol),
        pnl=decode_field("account_pnl_info", raw["account_pnl_info"])
        if raw["account_pnl_info"]
        else PnlInfo(),
        progress=TickProgress.from_json(raw[PROGRESS_FIELD]),
        cursor=raw[CURSOR_FIELD] or "",
        last_fill=datetime.fromisoformat(last_fill) if last_fill else None,
        reconcile=ReconcileMeta.from_json(raw[RECONCILE_FIELD]),
    )


def _stream_ms(entry_id: str) -> int | None:
    head, _, _ = entry_id.partition("-")
    return int(head) if head.isdigit() else None


def _event_view(row: EventRow) -> EventView:
    return EventView(
        row.id,
        row.created_at,
        row.session_id,
        row.kind,
        row.severity,
        row.message,
        dict(row.details or {}),
    )


def _last_events(rt: Runtime, session_ids: Iterable[str]) -> dict[str, EventView]:
    ids = list(session_ids)
    if not ids:
        return {}
    newest = (
        select(func.max(EventRow.id))
        .where(EventRow.session_id.in_(ids))
        .group_by(EventRow.session_id)
    )
    with DbSession(rt.engine) as db:
        rows = db.scalars(select(EventRow).where(EventRow.id.in_(newest))).all()
        return {cast(str, row.session_id): _event_view(row) for row in rows}


def _unfinished_rolls(rt: Runtime) -> dict[str, str]:
    query = select(RollRow.session_id, RollRow.status).where(
        RollRow.status.in_(UNFINISHED_ROLL_STATUSES)
    )
    with DbSession(rt.engine) as db:
        return {sid: status for sid, status in db.execute(query).all()}


def _risks(rt: Runtime, accounts: Iterable[str]) -> dict[str, AccountRisk]:
    """Every account's risk book as ``RiskBook.read`` reads it, in one round trip."""
    names = sorted(set(accounts))
    with rt.redis.pipeline(transaction=False) as pipe:
        for account in names:
            pipe.hgetall(risk_key(account))
        replies: list[Mapping[bytes, bytes]] = pipe.execute()
    return {
        account: account_risk_of(account, raw, rt.settings.risk)
        for account, raw in zip(names, replies, strict=True)
    }


def _redis_reads(
    rt: Runtime, rows: Sequence[TradingSessionRow]
) -> tuple[dict[str, _Held | None], dict[str, bool], dict[str, tuple[int, int] | None]]:
    """Every row's state fields (one round trip), then per contract its stall flag and its
    stream's oldest and newest ids in data-time ms (another)."""
    with rt.redis.pipeline(transaction=False) as pipe:
        for row in rows:
            pipe.hmget(state_key(row.id), list(_FIELDS))
        replies: list[Any] = pipe.execute()
    held = {row.id: _held(reply) for row, reply in zip(rows, replies, strict=True)}
    # The state's contract is the current one (a roll switches it before the SQL row).
    contracts = sorted(
        {row.contract for row in rows} | {h.contract for h in held.values() if h is not None}
    )
    with rt.redis.pipeline(transaction=False) as pipe:
        for contract in contracts:
            pipe.exists(stall_key(contract))
            pipe.xrange(stream_key(contract), count=1)
            pipe.xrevrange(stream_key(contract), count=1)
        found: list[Any] = pipe.execute()
    stalled: dict[str, bool] = {}
    tails: dict[str, tuple[int, int] | None] = {}
    for i, contract in enumerate(contracts):
        flag, head, tail = found[3 * i : 3 * i + 3]
        stalled[contract] = bool(flag)
        first = _stream_ms(_text(head[0][0]) or "") if head else None
        last = _stream_ms(_text(tail[0][0]) or "") if tail else None
        tails[contract] = None if first is None or last is None else (first, last)
    return held, stalled, tails


def fleet_view(
    rt: Runtime,
    now: datetime | None = None,
    *,
    session_ids: Iterable[str] | None = None,
    is_open: MarketOpen = market_open,
    stale_after: timedelta = STALE_AFTER,
    live_feed: Callable[[str], bool] = prints_live,
) -> FleetView:
    """Every session (or those of ``session_ids``) with its figures and status, and the
    totals per account of the rows shown. ``live_feed(feed name)``: whether that feed prints a
    market as it trades (``workers.feeds.registry.prints_live``): only such a session is
    stale when no tick came for ``stale_after`` while the market is open."""
    now = now or datetime.now(UTC)
    all_rows = list(list_session_rows(rt.engine))
    wanted = None if session_ids is None else set(session_ids)
    shown = [row for row in all_rows if wanted is None or row.id in wanted]
    accounts = {row.account for row in shown}
    rows = [row for row in all_rows if row.account in accounts]
    held, stalled, tails = _redis_reads(rt, rows)
    seen = read_broker_seen(rt.redis, accounts)
    risks = _risks(rt, accounts)
    rolls = _unfinished_rolls(rt)
    events = _last_events(rt, [row.id for row in shown])
    open_now = is_open(now)
    groups: dict[tuple[str, str], list[_Held]] = {}
    for row in rows:
        h = held[row.id]
        if h is not None:
            groups.setdefault((row.account, h.contract), []).append(h)
    views = []
    for row in shown:
        views.append(
            _session_view(
                row,
                held[row.id],
                groups,
                seen,
                risks[row.account],
                rolls.get(row.id),
                stalled,
                tails,
                events.get(row.id),
                now,
                open_now,
                stale_after,
                live_feed(row.market_data_source),
            )
        )
    totals = account_totals(view.figures() for view in views)
    return FleetView(now, views, list(totals.values()))


def _local(h: _Held) -> int:
    return h.position.quantity if h.position.contract == h.contract else 0


def _session_view(
    row: TradingSessionRow,
    h: _Held | None,
    groups: Mapping[tuple[str, str], list[_Held]],
    seen: Mapping[tuple[str, str], BrokerSeen],
    risk: AccountRisk,
    roll_status: str | None,
    stalled: Mapping[str, bool],
    tails: Mapping[str, tuple[int, int] | None],
    last_event: EventView | None,
    now: datetime,
    open_now: bool,
    stale_after: timedelta,
    live: bool,
) -> SessionView:
    contract = row.contract if h is None else h.contract
    progress = TickProgress() if h is None else h.progress
    last_tick = (
        None if progress.last_ms is None else EPOCH + timedelta(milliseconds=progress.last_ms)
    )
    status, reasons = session_status(
        StatusInputs(
            sql_status=row.status,
            has_state=h is not None,
            trading=h is not None and h.trading,
            rolling=h is not None and h.rolling,
            account_halted=risk.halted,
            roll_status=roll_status,
            ambiguous=h is not None and h.reconcile.ambiguous,
            broker_failing=h is not None and h.reconcile.stale,
            feed_stalled=stalled.get(contract, False),
            last_tick=last_tick,
            created_at=row.created_at,
            market_open=open_now,
            live_feed=live,
        ),
        now,
        stale_after,
    )
    broker_seen = seen.get((row.account, contract))
    broker = None
    check: BrokerCheck = "unknown"
    group = groups.get((row.account, contract), [])
    if broker_seen is not None:
        broker = BrokerView(
            broker_seen.quantity,
            broker_seen.average_price,
            broker_seen.fills_pending,
            broker_seen.as_of,
            max(0, int((now - broker_seen.as_of).total_seconds())),
        )
        fills = [g.last_fill for g in group if g.last_fill is not None]
        check = broker_check(
            sum(_local(g) for g in group),
            broker_seen.quantity,
            broker_seen.as_of,
            broker_seen.fills_pending,
            max(fills) if fills else None,
        )
    amount = risk.sessions.get(row.id, Decimal(0))
    heat = (
        (amount / risk.equity).quantize(HEAT_QUANTUM)
        if risk.equity is not None and risk.equity > 0
        else Decimal(0)
    )
    span = tails.get(contract)
    cursor_ms = None if h is None else _stream_ms(h.cursor)
    lag = None
    if span is not None:
        first, last = span
        lag = max(0, last - max(cursor_ms or 0, first))
    position = OpenPosition(contract) if h is None else h.position
    pnl = PnlInfo() if h is None else h.pnl
    return SessionView(
        session_id=row.id,
        name=row.name,
        account=row.account,
        product=row.product,
        contract=contract,
        timeframe=row.timeframe,
        strategy=row.strategy_name,
        sql_status=row.status,
        status=status,
        reasons=reasons,
        has_state=h is not None,
        position=0 if h is None else _local(h),
        position_contract=position.contract,
        average_price=position.average_price,
        stop_price=position.stop_price,
        broker=broker,
        broker_check=check,
        group_sessions=len(group),
        group_position=sum(_local(g) for g in group),
        realized=pnl.realized,
        unrealized=pnl.unrealized,
        commissions=pnl.commissions,
        risk=amount,
        heat=heat,
        last_tick_at=last_tick,
        tick_age_s=None if last_tick is None else int((now - last_tick).total_seconds()),
        tick_lag_ms=lag,
        candles_closed=progress.candles_closed,
        ticks_processed=progress.ticks_processed,
        last_event=last_event,
    )
