"""Initial schema: trading_sessions, orders, fills, events.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00+00:00

Self-contained on purpose (no import of ``models``): a migration must keep meaning what it
meant when it was written. Money/price columns are NUMERIC(18, 8) on PostgreSQL and the
canonical decimal text on SQLite (see ``models.tables.ExactDecimal``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

ORDER_STATUSES = (
    "'new', 'sent', 'working', 'partially_filled', 'filled', 'cancelled', 'rejected', 'lost'"
)
EVENT_KINDS = "'reconciliation', 'roll', 'risk', 'operator', 'data', 'strategy', 'recovery'"


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _decimal() -> sa.types.TypeEngine[Any]:
    return sa.Numeric(18, 8).with_variant(sa.String(21), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "trading_sessions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("account", sa.String(100), nullable=False),
        sa.Column("product", sa.String(50), nullable=False),
        sa.Column("contract", sa.String(50), nullable=False),
        sa.Column("timeframe", sa.String(20), nullable=False),
        sa.Column("strategy_name", sa.String(200), nullable=False),
        sa.Column("strategy_args", _json(), nullable=False),
        sa.Column("market_data_source", sa.String(200), nullable=False),
        sa.Column("market_data_args", _json(), nullable=False),
        sa.Column("account_manager", sa.String(200), nullable=False),
        sa.Column("account_manager_args", _json(), nullable=False),
        sa.Column("order_template", _json(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_sessions")),
        sa.UniqueConstraint("name", name=op.f("uq_trading_sessions_name")),
        sa.CheckConstraint(
            "status IN ('active', 'stopped')", name=op.f("ck_trading_sessions_status")
        ),
    )

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_order_id", sa.String(100), nullable=False),
        sa.Column("broker_order_id", sa.String(100), nullable=True),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("contract", sa.String(50), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("order_type", sa.String(10), nullable=False),
        sa.Column("limit_price", _decimal(), nullable=True),
        sa.Column("stop_price", _decimal(), nullable=True),
        sa.Column("time_in_force", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("intent", sa.String(10), nullable=False),
        sa.Column("decided_at", _utc(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("client_order_id", name=op.f("uq_orders_client_order_id")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["trading_sessions.id"],
            name=op.f("fk_orders_session_id_trading_sessions"),
        ),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_orders_side")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_orders_quantity_positive")),
        sa.CheckConstraint(
            "order_type IN ('market', 'limit', 'stop')", name=op.f("ck_orders_order_type")
        ),
        sa.CheckConstraint(
            "time_in_force IN ('day', 'gtc', 'ioc')", name=op.f("ck_orders_time_in_force")
        ),
        sa.CheckConstraint(f"status IN ({ORDER_STATUSES})", name=op.f("ck_orders_status")),
        sa.CheckConstraint("intent IN ('entry', 'exit', 'roll')", name=op.f("ck_orders_intent")),
        sa.CheckConstraint(
            "order_type <> 'limit' OR limit_price IS NOT NULL",
            name=op.f("ck_orders_limit_has_price"),
        ),
        sa.CheckConstraint(
            "order_type <> 'stop' OR stop_price IS NOT NULL", name=op.f("ck_orders_stop_has_price")
        ),
    )
    op.create_index(op.f("ix_orders_session_id"), "orders", ["session_id"])
    op.create_index(op.f("ix_orders_broker_order_id"), "orders", ["broker_order_id"])

    op.create_table(
        "fills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("execution_id", sa.String(100), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", _decimal(), nullable=False),
        sa.Column("commission", _decimal(), nullable=False),
        sa.Column("filled_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("execution_id", name=op.f("uq_fills_execution_id")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_fills_order_id_orders")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_fills_quantity_positive")),
    )
    op.create_index(op.f("ix_fills_order_id"), "fills", ["order_id"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(36), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["trading_sessions.id"],
            name=op.f("fk_events_session_id_trading_sessions"),
        ),
        sa.CheckConstraint(f"kind IN ({EVENT_KINDS})", name=op.f("ck_events_kind")),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'error', 'critical')", name=op.f("ck_events_severity")
        ),
    )
    op.create_index(op.f("ix_events_session_id_created_at"), "events", ["session_id", "created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_events_session_id_created_at"), table_name="events")
    op.drop_table("events")
    op.drop_index(op.f("ix_fills_order_id"), table_name="fills")
    op.drop_table("fills")
    op.drop_index(op.f("ix_orders_broker_order_id"), table_name="orders")
    op.drop_index(op.f("ix_orders_session_id"), table_name="orders")
    op.drop_table("orders")
    op.drop_table("trading_sessions")
