"""Contract rolls: the ``rolls`` table.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03 00:00:00+00:00

One row per roll of one session from one contract to the next: its plan (contracts, signed
quantity, decision time), its progress (status, next step), the client order ids of its close
and open orders and their fill prices. A partial unique index lets a session have at most one
unfinished roll (running, failed or waiting for the operator).

Self-contained on purpose (no import of ``models``), like ``0001``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

ROLL_STATUSES = "'running', 'done', 'failed', 'needs_operator', 'aborted'"
ROLL_STEPS = "'begin', 'close', 'await_close', 'open', 'await_open', 'switch', 'end', 'done'"
UNFINISHED = "status IN ('running', 'failed', 'needs_operator')"


def _decimal() -> sa.types.TypeEngine[object]:
    return sa.Numeric(18, 8).with_variant(sa.String(21), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rolls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("from_contract", sa.String(50), nullable=False),
        sa.Column("to_contract", sa.String(50), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("step", sa.String(20), nullable=False),
        sa.Column("decided_at", _utc(), nullable=False),
        sa.Column("close_client_order_id", sa.String(100), nullable=True),
        sa.Column("open_client_order_id", sa.String(100), nullable=True),
        sa.Column("close_fill_price", _decimal(), nullable=True),
        sa.Column("open_fill_price", _decimal(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint(f"status IN ({ROLL_STATUSES})", name=op.f("ck_rolls_status")),
        sa.CheckConstraint(f"step IN ({ROLL_STEPS})", name=op.f("ck_rolls_step")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["trading_sessions.id"],
            name=op.f("fk_rolls_session_id_trading_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rolls")),
    )
    op.create_index(op.f("ix_rolls_session_id"), "rolls", ["session_id"])
    op.create_index(
        op.f("ix_rolls_session_id_unfinished"),
        "rolls",
        ["session_id"],
        unique=True,
        sqlite_where=sa.text(UNFINISHED),
        postgresql_where=sa.text(UNFINISHED),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_rolls_session_id_unfinished"), table_name="rolls")
    op.drop_index(op.f("ix_rolls_session_id"), table_name="rolls")
    op.drop_table("rolls")
