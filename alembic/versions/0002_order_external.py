"""Orders adopted from the broker: ``orders.external``.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02 00:00:00+00:00

An order found open at the broker that no session decided is adopted by reconciliation into
the session it belongs to; its row says so. Existing rows are the sessions' own (false).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("external", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("external")
