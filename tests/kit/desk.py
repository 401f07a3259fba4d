"""An operator's desk without workers: ``Desk`` points one ``Settings`` at the private Redis
(sessions in db 0, the paper broker in db 1) and a migrated database (PostgreSQL or SQLite),
creates sessions on the paper broker, gives one a position the way the fleet would (its entry's
row and working copy, placed at the paper broker, its fill applied), and reads what the
operator's actions left: events, order rows, positions at the broker.

The operator functions (``workers.operations``) and the console (``workers.web``) are tested
on it; what needs running workers is tested with ``tests.kit.fleet``.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from types import TracebackType
from typing import Any

import redis
from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.meta import PROGRESS_FIELD
from models.progress import TickProgress
from models.state import WorkingOrder
from models.tables import EventKind, EventRow, OrderRow
from tests.kit.paper import paper, place
from tests.kit.redis import paper_url
from tests.kit.replay import SessionPlan, first_tick_time, replay_ticks
from tests.kit.snapshots import CONTRACT
from trading.intents import client_order_id
from trading.market import epoch_ms
from workers.brokers.commands import QueryPositions
from workers.celery_app import create_app
from workers.db.engines import upgrade
from workers.db.event_rows import list_events
from workers.db.order_rows import insert_order_if_absent, update_order_row
from workers.feeds.runner import run_feed
from workers.orders.fills import deliver_fills
from workers.runtime import Runtime, make_publisher
from workers.sessions.create import create_session
from workers.settings import (
    DatabaseSettings,
    ReconcileSettings,
    RedisSettings,
    Settings,
    WebSettings,
)
from workers.state.store import StateChanges

SECRET_KEY = "desk-test-secret-key-0123456789abcdef"
"""The console's signing key in tests (at least 32 characters)."""

QUIET = ("sma_cross", (("fast", "3"), ("slow", "200")))
"""A strategy that never decides on the few ticks a desk test publishes (no workers anyway)."""

TICKS = 40
"""Replay ticks published per desk: enough for an order decided at the first to fill."""


GRACE_S = 0.0
"""Reconciliation's grace after a fill: none, so a desk's pass corrects at once."""


def desk_settings(redis_url: str, database_url: str, **web: Any) -> Settings:
    """Settings on the private Redis and ``database_url``; ``web`` overrides the console's."""
    return Settings(
        redis=RedisSettings(url=redis_url, paper_broker_url=paper_url(redis_url)),
        database=DatabaseSettings(url=database_url),
        reconcile=ReconcileSettings(grace_s=GRACE_S),
        web=WebSettings(**{"secret_key": SECRET_KEY, **web}),
    )


class Desk:
    """One test's stores, migrated, with sessions on the paper broker and the replay's first
    ticks published."""

    def __init__(self, redis_url: str, database_url: str, **web: Any) -> None:
        upgrade(database_url)
        self.settings = desk_settings(redis_url, database_url, **web)
        self.rt = Runtime(self.settings)
        self.client = redis.Redis.from_url(redis_url)
        self.celery: Celery = create_app(self.settings)
        self.ticks = replay_ticks()[:TICKS]
        publisher = make_publisher(self.client, self.settings, self.celery)
        run_feed(self.ticks, publisher, None, batch=TICKS)

    @property
    def engine(self) -> Any:
        return self.rt.engine

    def create(self, name: str, account: str) -> str:
        """A session on ``account`` (paper broker, ES), as ``tradefleet session create``."""
        plan = SessionPlan(name, account, *QUIET)
        return create_session(self.settings, plan.request()).session.id

    def hold(self, session_id: str, account: str) -> str:
        """Give the session a long position of 1 the way the fleet would: its entry decided
        at the first replay tick (row, working copy, the session's signal sequence), placed at
        the paper broker (filled at that tick), the fill applied; the session's clock then at
        the last published tick. The entry's client order id."""
        coid = self.order(session_id, account, "market")
        self.deliver(account)
        assert self.position(session_id) == 1
        return coid

    def order(
        self, session_id: str, account: str, order_type: str, limit: str | None = None
    ) -> str:
        """One buy entry of the session decided at the first replay tick and placed at the
        paper broker (a market order fills there; a limit far below the market rests); its
        client order id."""
        decided = first_tick_time()
        with self.rt.store.locked(session_id, wait_s=5) as lease:
            progress = TickProgress.from_json(lease.fields.get(PROGRESS_FIELD))
            seq = progress.signal_seq + 1
            order = WorkingOrder(
                client_order_id=client_order_id(session_id, seq, 0),
                contract=CONTRACT,
                side="buy",
                quantity=1,
                order_type=order_type,  # type: ignore[arg-type]
                intent="entry",
                status="working",
                created_at=decided,
                limit_price=None if limit is None else Decimal(limit),
            )
            coid = order.client_order_id
            last_ms = epoch_ms(self.ticks[-1].time)
            meta = {PROGRESS_FIELD: replace(progress, signal_seq=seq, last_ms=last_ms).to_json()}
            orders = {**lease.value("orders"), coid: order}
            self.rt.store.write(lease, StateChanges.of({"orders": orders}, meta=meta))
        assert insert_order_if_absent(self.engine, session_id, order, decided, "day")
        update_order_row(self.engine, coid, "working")
        broker = paper(self.rt, account)
        status = place(broker, account, session_id, coid, "buy", order_type, limit)
        assert status == ("filled" if order_type == "market" else "working")
        return coid

    def deliver(self, account: str) -> int:
        """Apply the fills the paper broker logged for ``account``."""
        return deliver_fills(
            self.rt.redis,
            self.rt.store,
            self.engine,
            paper(self.rt, account),
            account,
            self.settings.risk,
            self.settings.stops,
        )

    def position(self, session_id: str) -> int:
        held = self.rt.store.load(session_id).open_position
        return 0 if held is None else held.quantity

    def broker_positions(self, account: str) -> dict[str, int]:
        held = paper(self.rt, account).positions(QueryPositions(account))
        return {contract: qty for contract, qty in held.items() if qty}

    def events(self, kind: EventKind | None = None) -> list[EventRow]:
        return list(list_events(self.engine, kind=kind))

    def orders(self, session_id: str) -> list[OrderRow]:
        with Session(self.engine) as db:
            query = select(OrderRow).where(OrderRow.session_id == session_id)
            return list(db.scalars(query.order_by(OrderRow.id)).all())

    def close(self) -> None:
        self.celery.close()
        self.rt.engine.dispose()
        self.rt.redis.close()
        self.client.close()

    def __enter__(self) -> Desk:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
