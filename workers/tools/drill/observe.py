"""What one run ended with, read from every store: ``observe`` → ``RunOutcome``.

Per session (by its scenario label; session ids differ between runs): its fills from SQL (the
client order id without the session's hash, side, quantity, price, data time), its position in
the state and at the broker, every client order id SQL and the broker hold, its tick counters.
The runner reads through its own link to the services host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import redis
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from models.codec import state_key
from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from models.tables import FillRow, OrderRow
from workers.brokers.commands import QueryPositions
from workers.brokers.paper.broker import PaperBroker
from workers.metrics.catalog import TICKS_REJECTED
from workers.state.store import StateStore

FillKey = tuple[str, str, int, Decimal, datetime]
"""(client order id without the session's hash, side, quantity, price, data time)."""


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    label: str
    session_id: str
    fills: tuple[FillKey, ...]
    position: int
    broker_position: int
    order_rows: Mapping[str, str]
    """Client order id → status, every order row of the session."""
    broker_orders: frozenset[str]
    """Every client order id the broker holds on the session's account."""
    ticks_processed: int
    rejected: Mapping[str, int]
    candles_closed: int


@dataclass(frozen=True, slots=True)
class RunOutcome:
    sessions: Mapping[str, SessionOutcome]
    rejected: Mapping[str, int]
    """``tradefleet_ticks_rejected_total`` by reason: the sessions' and the publisher's."""

    def as_json(self) -> dict[str, Any]:
        """Everything observed, for the run's log folder (a failed drill is read there)."""
        return {
            label: {
                "session_id": s.session_id,
                "position": s.position,
                "broker_position": s.broker_position,
                "ticks_processed": s.ticks_processed,
                "rejected": dict(s.rejected),
                "candles_closed": s.candles_closed,
                "fills": [[k, side, q, str(p), t.isoformat()] for k, side, q, p, t in s.fills],
                "order_rows": dict(s.order_rows),
                "broker_orders": sorted(s.broker_orders),
            }
            for label, s in self.sessions.items()
        } | {"tradefleet_ticks_rejected_total": dict(self.rejected)}


def observe(
    sessions: Mapping[str, tuple[str, str, str]],
    client: redis.Redis,
    engine: Engine,
    broker: PaperBroker,
    broker_client: redis.Redis,
    lock_ttl_ms: int,
) -> RunOutcome:
    """``sessions``: label → (session id, account, contract it started on); the broker's
    position is read for the contract the session is on now (a roll moves it)."""
    store = StateStore(client, lock_ttl_ms)
    out = {}
    for label, (sid, account, _started_on) in sessions.items():
        state = store.load(sid)
        raw = cast(bytes | None, client.hget(state_key(sid), PROGRESS_FIELD))
        progress = TickProgress.from_json(None if raw is None else raw.decode())
        held = broker.positions(QueryPositions(account)).get(state.session.contract, 0)
        rows, fills = _sql(engine, sid)
        out[label] = SessionOutcome(
            label=label,
            session_id=sid,
            fills=fills,
            position=0 if state.open_position is None else state.open_position.quantity,
            broker_position=held,
            order_rows=rows,
            broker_orders=_broker_orders(broker_client, account),
            ticks_processed=progress.ticks_processed,
            rejected=dict(progress.rejected),
            candles_closed=progress.candles_closed,
        )
    raw_counts = cast(dict[bytes, bytes], client.hgetall(TICKS_REJECTED.key))
    return RunOutcome(out, {k.decode(): int(v) for k, v in raw_counts.items()})


def short_coid(coid: str) -> str:
    """``<hash of the session id>-<rest>`` → ``<rest>``: the same in every run."""
    return coid.split("-", 1)[1] if "-" in coid else coid


def _sql(engine: Engine, session_id: str) -> tuple[dict[str, str], tuple[FillKey, ...]]:
    with Session(engine) as db:
        orders = db.scalars(select(OrderRow).where(OrderRow.session_id == session_id)).all()
        by_id = {row.id: row for row in orders}
        fill_rows = db.scalars(select(FillRow).where(FillRow.order_id.in_(by_id))).all()
        fills = sorted(
            (
                short_coid(by_id[f.order_id].client_order_id),
                by_id[f.order_id].side,
                f.quantity,
                f.price.normalize(),
                f.filled_at,
            )
            for f in fill_rows
        )
        rows = {row.client_order_id: str(row.status) for row in orders}
    return rows, tuple(fills)


def _broker_orders(client: redis.Redis, account: str) -> frozenset[str]:
    prefix = f"paper:acct:{account}:order:"
    keys: Any = client.scan_iter(match=prefix + "*", count=1_000)
    return frozenset(k.decode()[len(prefix) :] for k in keys)
