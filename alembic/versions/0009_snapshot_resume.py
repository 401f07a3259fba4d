"""Snapshots a session resumes from: tick counters and the candle in progress.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-15 00:00:00+00:00

``strategy_snapshots`` gains what a session needs to resume exactly at its snapshot's cursor
when its Redis and the instrument's stream were lost together (``workers.recovery``): the good
ticks it had processed, its rejected entries by reason, the partial candle and the open
position (its protective stop's price) as the step left them. Null in rows written before:
such a snapshot is resumed from the stream's end.

Self-contained on purpose (no import of ``models``), like ``0001``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("strategy_snapshots") as batch:
        batch.add_column(sa.Column("ticks_processed", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("rejected", _json(), nullable=True))
        batch.add_column(sa.Column("partial_candle", _json(), nullable=True))
        batch.add_column(sa.Column("open_position", _json(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("strategy_snapshots") as batch:
        batch.drop_column("open_position")
        batch.drop_column("partial_candle")
        batch.drop_column("rejected")
        batch.drop_column("ticks_processed")
