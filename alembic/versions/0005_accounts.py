"""Per-account risk settings: the ``accounts`` table.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-05 00:00:00+00:00

One row per account that has its own settings (``tradefleet account set``): heat warn and block
levels (fractions of equity), the daily loss limit, and whether ``tradefleet halt`` holds it.
An account without a row uses the defaults of ``workers.settings``.

Self-contained on purpose (no import of ``models``), like ``0001``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def _decimal() -> sa.types.TypeEngine[Any]:
    return sa.Numeric(18, 8).with_variant(sa.String(21), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account", sa.String(100), nullable=False),
        sa.Column("heat_warn", _decimal(), nullable=False),
        sa.Column("heat_block", _decimal(), nullable=False),
        sa.Column("max_daily_loss", _decimal(), nullable=True),
        sa.Column("halted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_accounts")),
    )


def downgrade() -> None:
    op.drop_table("accounts")
