"""Strategy-state snapshots: the ``strategy_snapshots`` table.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04 00:00:00+00:00

One row per session: its strategy's own state, signal sequence, closed-candle count, last tick
time and tick-stream cursor, as of its last tick step that closed candles. A session whose Redis
state is lost is rebuilt from it (``workers.recovery``).

Self-contained on purpose (no import of ``models``), like ``0001``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "strategy_snapshots",
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("strategy_state", _json(), nullable=False),
        sa.Column("signal_seq", sa.Integer(), nullable=False),
        sa.Column("candles_closed", sa.Integer(), nullable=False),
        sa.Column("last_ms", sa.BigInteger(), nullable=True),
        sa.Column("cursor", sa.String(64), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["trading_sessions.id"],
            name=op.f("fk_strategy_snapshots_session_id_trading_sessions"),
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_strategy_snapshots")),
    )


def downgrade() -> None:
    op.drop_table("strategy_snapshots")
