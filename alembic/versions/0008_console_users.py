"""Users of the operations console: the ``console_users`` table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-14 00:00:00+00:00

One row per console user (``tradefleet web adduser``): the name, the role (``viewer`` sees,
``operator`` also acts) and the password's argon2 hash (never the password).

Self-contained on purpose (no import of ``models``), like ``0001``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint("role IN ('viewer', 'operator')", name=op.f("ck_console_users_role")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_console_users")),
    )


def downgrade() -> None:
    op.drop_table("console_users")
