"""Asking for a recovery, once: a worker met a session without state, or beat's fan-out found
an active session without state.

``request_recovery`` takes ``tf:recovery:{<sid>}:queued`` (``SET NX`` with a TTL) before it
queues the task, so a session met on every tick batch is queued once per TTL, and only when its
SQL row says it is active (a stopped or deleted session has no state on purpose).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models.codec import check_session_id, state_key
from models.tables import TradingSessionRow
from workers.db.session_rows import get_session_row
from workers.dispatch import names
from workers.settings import Settings

log = logging.getLogger(__name__)

QUEUED_TTL_S = 30
"""A recovery asked for is not asked for again within this time (the task retries itself)."""


def queued_key(session_id: str) -> str:
    return f"tf:recovery:{{{check_session_id(session_id)}}}:queued"


def lock_key(session_id: str) -> str:
    """Held while one recovery of the session runs (two never run at once)."""
    return f"tf:recovery:{{{check_session_id(session_id)}}}:lock"


def request_recovery(
    client: redis.Redis,
    engine: Engine,
    settings: Settings,
    send_task: Callable[..., Any],
    session_id: str,
) -> bool:
    """Queue one recovery of ``session_id`` (see the module); True if this call queued it."""
    if not client.set(queued_key(session_id), "1", nx=True, ex=QUEUED_TTL_S):
        return False
    row = get_session_row(engine, session_id)
    if row is None or row.status != "active":
        return False
    send_task(names.RECOVER, args=[session_id], queue=settings.queues.reconcile)
    log.warning("session %s has no state in Redis: recovery queued", session_id)
    return True


def missing_sessions(client: redis.Redis, engine: Engine) -> list[str]:
    """Sessions active in SQL whose Redis state is missing, oldest first."""
    query = (
        select(TradingSessionRow.id)
        .where(TradingSessionRow.status == "active")
        .order_by(TradingSessionRow.created_at, TradingSessionRow.id)
    )
    with Session(engine) as db:
        ids = list(db.scalars(query).all())
    if not ids:
        return []
    with client.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.exists(state_key(session_id))
        present = pipe.execute()
    return [sid for sid, found in zip(ids, present, strict=True) if not found]
