"""Market-data events: the ``feed`` event kind (a live feed stalled, or flows again).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 00:00:00+00:00

Self-contained on purpose (no import of ``models``), like ``0001``.
"""

from __future__ import annotations

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

OLD = "'reconciliation', 'roll', 'risk', 'operator', 'data', 'strategy', 'recovery'"
NEW = OLD + ", 'feed'"


def _kinds(kinds: str) -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint(op.f("ck_events_kind"), type_="check")
        batch.create_check_constraint("kind", f"kind IN ({kinds})")


def upgrade() -> None:
    _kinds(NEW)


def downgrade() -> None:
    op.execute("DELETE FROM events WHERE kind = 'feed'")
    _kinds(OLD)
