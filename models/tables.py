"""The durable record: SQLAlchemy 2 tables for sessions, orders, fills and events.

Redis holds the working state of a session; these tables hold what must survive it: the session
definition (to rebuild a lost state), every order (written before it is sent), every fill (once
per broker execution id) and every event (corrections, rolls, risk, operator actions).

Two column types keep the storage rules of DESIGN.md on both SQLite and PostgreSQL:
``ExactDecimal`` (money and prices come back as the exact ``Decimal`` written) and ``UtcDateTime``
(timestamps go in and come back timezone-aware UTC; naive values are refused).
Every constraint and index is named through ``NAMING_CONVENTION`` so migrations can address them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeAlias, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from models.state import Intent, OrderStatus, OrderType, Side, TimeInForce
from trading import events as trading_events
from trading.exceptions import BadInput

SessionStatus = Literal["active", "stopped"]
EventKind: TypeAlias = trading_events.EventKind
Severity: TypeAlias = trading_events.Severity
RollStatus = Literal["running", "done", "failed", "needs_operator", "aborted"]
RollStep = Literal["begin", "close", "await_close", "open", "await_open", "switch", "end", "done"]
UserRole = Literal["viewer", "operator"]

SESSION_STATUSES: tuple[str, ...] = get_args(SessionStatus)
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
SEVERITIES: tuple[str, ...] = get_args(Severity)
ROLL_STATUSES: tuple[str, ...] = get_args(RollStatus)
ROLL_STEPS: tuple[str, ...] = get_args(RollStep)
USER_ROLES: tuple[str, ...] = get_args(UserRole)
UNFINISHED_ROLL_STATUSES: tuple[str, ...] = ("running", "failed", "needs_operator")
"""A roll in one of these holds its session: no second roll may start (a partial unique index)."""

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DECIMAL_PRECISION = 18
DECIMAL_SCALE = 8
_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)
_MAX_ABS = Decimal(10) ** (DECIMAL_PRECISION - DECIMAL_SCALE)


def utcnow() -> datetime:
    """The current time, aware UTC (column defaults only; ``trading/`` never reads the clock)."""
    return datetime.now(UTC)


def _in_check(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def to_exact_decimal(value: object) -> Decimal:
    """``value`` as a Decimal with exactly ``DECIMAL_SCALE`` places, refusing any rounding.

    Floats are refused (they are never exact); so are NaN, infinities, values with more than
    ``DECIMAL_SCALE`` decimal places and values too large for NUMERIC(18, 8).
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise BadInput(f"money/price must be a Decimal, got {type(value).__name__}: {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise BadInput(f"not a decimal number: {value!r}") from None
    if not number.is_finite():
        raise BadInput(f"money/price must be finite, got {number}")
    quantized = number.quantize(_QUANTUM)
    if quantized != number:
        raise BadInput(f"{number} has more than {DECIMAL_SCALE} decimal places")
    if abs(quantized) >= _MAX_ABS:
        raise BadInput(f"{number} does not fit NUMERIC({DECIMAL_PRECISION}, {DECIMAL_SCALE})")
    return quantized


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC(18, 8) on PostgreSQL; the canonical fixed-point string on SQLite.

    SQLite has no exact decimal storage (NUMERIC affinity keeps 15 significant digits), so the
    value is stored there as text such as ``'1773.25000000'``. On both backends a value comes
    back as a ``Decimal`` equal to the one written, with exactly eight places.
    """

    impl = Numeric(DECIMAL_PRECISION, DECIMAL_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(DECIMAL_PRECISION + 3))
        return dialect.type_descriptor(Numeric(DECIMAL_PRECISION, DECIMAL_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        exact = to_exact_decimal(value)
        if dialect.name == "sqlite":
            return format(exact, "f")
        return exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, float):
            raise BadInput(f"stored decimal came back as a float: {value!r}")
        return Decimal(value).quantize(_QUANTUM)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend; naive datetimes are refused.

    PostgreSQL stores ``timestamp with time zone``; SQLite stores the UTC wall time (it keeps no
    zone) and the zone is put back on read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise BadInput(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise BadInput(f"naive datetime refused (timestamps are aware UTC): {value!r}")
        utc = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise BadInput(f"stored timestamp is not a datetime: {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JsonDocument = JSON().with_variant(JSONB(), "postgresql")
"""JSON everywhere; JSONB on PostgreSQL (comparable, indexable)."""


class Base(DeclarativeBase):
    """The declarative base; its metadata names every constraint and index."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TradingSessionRow(Base):
    """One session's definition: what to rebuild its Redis state from."""

    __tablename__ = "trading_sessions"
    __table_args__ = (CheckConstraint(_in_check("status", SESSION_STATUSES), name="status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    account: Mapped[str] = mapped_column(String(100))
    product: Mapped[str] = mapped_column(String(50))
    contract: Mapped[str] = mapped_column(String(50))
    timeframe: Mapped[str] = mapped_column(String(20))
    strategy_name: Mapped[str] = mapped_column(String(200))
    strategy_args: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    market_data_source: Mapped[str] = mapped_column(String(200))
    market_data_args: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    account_manager: Mapped[str] = mapped_column(String(200))
    account_manager_args: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    order_template: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    status: Mapped[SessionStatus] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class OrderRow(Base):
    """One order, written before it is sent; ``client_order_id`` is deterministic per signal."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(_in_check("side", get_args(Side)), name="side"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(_in_check("order_type", get_args(OrderType)), name="order_type"),
        CheckConstraint(_in_check("time_in_force", get_args(TimeInForce)), name="time_in_force"),
        CheckConstraint(_in_check("status", get_args(OrderStatus)), name="status"),
        CheckConstraint(_in_check("intent", get_args(Intent)), name="intent"),
        CheckConstraint("order_type <> 'limit' OR limit_price IS NOT NULL", name="limit_has_price"),
        CheckConstraint("order_type <> 'stop' OR stop_price IS NOT NULL", name="stop_has_price"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(String(100), unique=True)
    broker_order_id: Mapped[str | None] = mapped_column(String(100), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("trading_sessions.id"), index=True)
    contract: Mapped[str] = mapped_column(String(50))
    side: Mapped[Side] = mapped_column(String(4))
    quantity: Mapped[int] = mapped_column(Integer)
    order_type: Mapped[OrderType] = mapped_column(String(10))
    limit_price: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    stop_price: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    time_in_force: Mapped[TimeInForce] = mapped_column(String(10), default="day")
    status: Mapped[OrderStatus] = mapped_column(String(20), default="new")
    intent: Mapped[Intent] = mapped_column(String(10))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    external: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """An order no session decided, found open at the broker and adopted by reconciliation."""


class FillRow(Base):
    """One execution, recorded once: the broker's ``execution_id`` is unique."""

    __tablename__ = "fills"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(String(100), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(ExactDecimal())
    commission: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal(0))
    filled_at: Mapped[datetime] = mapped_column(UtcDateTime())


class EventRow(Base):
    """Something that happened and must be explained later (every correction is one)."""

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint(_in_check("kind", EVENT_KINDS), name="kind"),
        CheckConstraint(_in_check("severity", SEVERITIES), name="severity"),
        Index("ix_events_session_id_created_at", "session_id", "created_at"),
        Index("ix_events_dedupe_key", "dedupe_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str | None] = mapped_column(ForeignKey("trading_sessions.id"))
    kind: Mapped[EventKind] = mapped_column(String(20))
    severity: Mapped[Severity] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    dedupe_key: Mapped[str | None] = mapped_column(String(64))
    """Set on a tick step's events (written before its state, again by a re-run: one kept)."""


class RollRow(Base):
    """One contract roll of one session (``workers.rolls``): its plan, progress and prices.

    ``quantity`` is the signed position rolled (0: the session was flat and only switched).
    ``step`` is the next step to run (``done`` once ended). At most one unfinished roll per
    session (``ix_rolls_session_id_unfinished``, a partial unique index).
    """

    __tablename__ = "rolls"
    __table_args__ = (
        CheckConstraint(_in_check("status", ROLL_STATUSES), name="status"),
        CheckConstraint(_in_check("step", ROLL_STEPS), name="step"),
        Index(
            "ix_rolls_session_id_unfinished",
            "session_id",
            unique=True,
            sqlite_where=text(_in_check("status", UNFINISHED_ROLL_STATUSES)),
            postgresql_where=text(_in_check("status", UNFINISHED_ROLL_STATUSES)),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("trading_sessions.id"), index=True)
    from_contract: Mapped[str] = mapped_column(String(50))
    to_contract: Mapped[str] = mapped_column(String(50))
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[RollStatus] = mapped_column(String(20), default="running")
    step: Mapped[RollStep] = mapped_column(String(20), default="begin")
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime())
    """The session's clock when the roll was decided: the data time of both roll orders."""
    close_client_order_id: Mapped[str | None] = mapped_column(String(100))
    open_client_order_id: Mapped[str | None] = mapped_column(String(100))
    close_fill_price: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    open_fill_price: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class StrategySnapshotRow(Base):
    """The last strategy-state snapshot of one session, taken after a tick step that closed
    candles (``workers.recovery``): what a lost Redis state is rebuilt from. ``cursor`` is the
    session's tick-stream cursor at the snapshot and ``last_ms`` its last tick's data time;
    with its tick counters and partial candle, a session resumes exactly at ``cursor`` when
    the stream was lost with the state (the feed publishes again from there)."""

    __tablename__ = "strategy_snapshots"

    session_id: Mapped[str] = mapped_column(ForeignKey("trading_sessions.id"), primary_key=True)
    strategy_state: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    signal_seq: Mapped[int] = mapped_column(Integer)
    candles_closed: Mapped[int] = mapped_column(Integer)
    last_ms: Mapped[int | None] = mapped_column(BigInteger)
    cursor: Mapped[str] = mapped_column(String(64))
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ticks_processed: Mapped[int | None] = mapped_column(BigInteger)
    """The good ticks processed up to ``cursor`` (null in rows older than 0009)."""
    rejected: Mapped[dict[str, int] | None] = mapped_column(JsonDocument)
    """Entries rejected up to ``cursor``, by reason."""
    partial_candle: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    """The candle in progress at ``cursor`` (the state hash's ``latest_partial_candle`` text,
    parsed); null when there was none."""
    open_position: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    """The open position at ``cursor`` (the state hash's ``open_position``, parsed): its
    protective stop's price and opening time are the session's own, not the broker's."""


class AccountRow(Base):
    """One account's own risk settings (``tradefleet account set``) and its halt flag; an
    account without a row uses the defaults of ``workers.settings``. Redis holds the working
    copy in the account's risk hash (``workers.risk``)."""

    __tablename__ = "accounts"

    account: Mapped[str] = mapped_column(String(100), primary_key=True)
    heat_warn: Mapped[Decimal] = mapped_column(ExactDecimal())
    heat_block: Mapped[Decimal] = mapped_column(ExactDecimal())
    max_daily_loss: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    halted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class UserRow(Base):
    """One user of the operations console (``tradefleet web adduser``): a ``viewer`` sees, an
    ``operator`` also acts. Only the password's argon2 hash is stored, never the password."""

    __tablename__ = "console_users"
    __table_args__ = (CheckConstraint(_in_check("role", USER_ROLES), name="role"),)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[UserRole] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


metadata: MetaData = Base.metadata
"""Every table, for Alembic's ``target_metadata``."""
