"""The sessions' rows in SQL: created, found, listed, marked active or stopped.

Every function takes, explicitly, either
- a ``Session``: it works inside the caller's transaction and never commits (writes are
  flushed, so a constraint the database refuses raises here); or
- an ``Engine``: it runs in a transaction of its own, committed before it returns; the rows it
  returns are detached but fully loaded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models.state import SessionState
from models.tables import (
    SESSION_STATUSES,
    SessionStatus,
    TradingSessionRow,
)
from trading.exceptions import BadInput, UnknownSession


@contextmanager
def in_session(db: Session | Engine) -> Iterator[Session]:
    """``db`` as a session: the caller's own, or a new one whose transaction commits on exit."""
    if isinstance(db, Session):
        yield db
        return
    with Session(db, expire_on_commit=False) as session, session.begin():
        yield session


def create_session_row(db: Session | Engine, state: SessionState) -> TradingSessionRow:
    """Insert the durable definition of a new session, taken from its initial state.

    The row keeps the state's id and ``created_at``, so SQL and Redis agree. A name already
    taken is refused with ``BadInput`` (the unique constraint backs this up under races).
    """
    info = state.session
    if not info.name.strip():
        raise BadInput("a session needs a non-empty name")
    template = state.order_template
    with in_session(db) as session:
        if find_session_row_by_name(session, info.name) is not None:
            raise BadInput(f"a session named {info.name!r} already exists")
        row = TradingSessionRow(
            id=info.id,
            name=info.name,
            account=info.account,
            product=info.product,
            contract=info.contract,
            timeframe=info.timeframe,
            strategy_name=state.strategy.module,
            strategy_args=dict(state.strategy.args),
            market_data_source=state.market_data_source.module,
            market_data_args=dict(state.market_data_source.args),
            account_manager=state.account_manager.module,
            account_manager_args=dict(state.account_manager.args),
            order_template={
                "order_type": template.order_type,
                "quantity": template.quantity,
                "time_in_force": template.time_in_force,
            },
            status="active",
            created_at=info.created_at,
            updated_at=info.created_at,
        )
        session.add(row)
        session.flush()
        return row


def get_session_row(db: Session | Engine, session_id: str) -> TradingSessionRow | None:
    """The session with this id, or ``None``."""
    with in_session(db) as session:
        return session.get(TradingSessionRow, session_id)


def find_session_row_by_name(db: Session | Engine, name: str) -> TradingSessionRow | None:
    """The session with this (unique) name, or ``None``."""
    query = select(TradingSessionRow).where(TradingSessionRow.name == name)
    with in_session(db) as session:
        return session.scalars(query).first()


def list_session_rows(db: Session | Engine) -> Sequence[TradingSessionRow]:
    """Every session, oldest first."""
    query = select(TradingSessionRow).order_by(TradingSessionRow.created_at, TradingSessionRow.name)
    with in_session(db) as session:
        return session.scalars(query).all()


def sessions_on_account(db: Session | Engine, account: str) -> Sequence[TradingSessionRow]:
    """Every session trading ``account`` (active or stopped: a stopped session's fills are
    still applied), oldest first."""
    query = (
        select(TradingSessionRow)
        .where(TradingSessionRow.account == account)
        .order_by(TradingSessionRow.created_at, TradingSessionRow.name)
    )
    with in_session(db) as session:
        return session.scalars(query).all()


def set_session_status(
    db: Session | Engine, session_id: str, status: SessionStatus
) -> TradingSessionRow:
    """Mark a session active or stopped; an unknown id raises ``UnknownSession``."""
    if status not in SESSION_STATUSES:
        raise BadInput(f"unknown session status {status!r} (known: {', '.join(SESSION_STATUSES)})")
    with in_session(db) as session:
        row = session.get(TradingSessionRow, session_id)
        if row is None:
            raise UnknownSession(session_id)
        row.status = status
        session.flush()
        return row
