"""Events written before the state they explain: ``events.dedupe_key``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 00:00:00+00:00

The tick path writes a step's events before its fenced state write (with the order rows), so
a worker killed between the two loses none; the re-run of the step derives the same events
with the same key and the unique index keeps one row of each. Other events have no key.

Self-contained on purpose (no import of ``models``), like ``0001``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("dedupe_key", sa.String(64), nullable=True))
    op.create_index("ix_events_dedupe_key", "events", ["dedupe_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_events_dedupe_key", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("dedupe_key")
