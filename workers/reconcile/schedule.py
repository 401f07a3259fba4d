"""The per-period fan-out of reconciliation, with its one-scheduler guard.

Beat sends a fan-out task every period. Two beat processes (a misconfiguration, or a standby
that took over) send two; the guard makes exactly one of them do the work: the first one
takes ``tf:beat:<job>:<period index>`` (``SET NX``, expiring after two periods) where the
period index is ``floor(epoch seconds / interval)``; any other fan-out of the same period
finds it taken and does nothing (the same guarantee as RedBeat's lock, with plain beat).

The winner sends one task per ACTIVE session (SQL status active and state present in Redis)
on queue ``reconcile``, expiring after one interval so a backlog never piles up stale runs.
An active session without state is not reconciled: the positions fan-out queues its recovery
instead (``workers.dispatch.recovery``, once per its guard's TTL).
Each claim is counted in ``tf:beat:stats`` (``<job>:won`` / ``<job>:skipped``) and the won
period indices are kept in ``tf:beat:<job>:won`` (newest first).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from models.codec import state_key
from models.tables import TradingSessionRow
from workers.dispatch import names
from workers.dispatch.recovery import missing_sessions, request_recovery
from workers.runtime import Runtime

Job = Literal["positions", "orders"]
JOBS: tuple[Job, ...] = ("positions", "orders")

SESSION_TASKS: dict[Job, str] = {
    "positions": names.RECONCILE_POSITIONS,
    "orders": names.RECONCILE_ORDERS,
}
STATS_KEY = "tf:beat:stats"
WON_KEEP = 1_000

CLAIM = """
-- KEYS: guard, won list, stats   ARGV: token, ttl_ms, period index, job
-- Takes the period's guard once; 1 if this call took it, 0 if it was taken before.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
  redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':won', 1)
  return 1
end
redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':skipped', 1)
return 0
"""


def guard_key(job: Job, index: int) -> str:
    return f"tf:beat:{job}:{index}"


def won_key(job: Job) -> str:
    return f"tf:beat:{job}:won"


def period_index(now_s: float, interval_s: float) -> int:
    """The number of the period ``now_s`` (epoch seconds) falls in."""
    if interval_s <= 0:
        raise ValueError(f"interval must be > 0, got {interval_s}")
    return math.floor(now_s / interval_s)


def claim_period(
    client: redis.Redis, job: Job, interval_s: float, now_s: float, token: str
) -> int | None:
    """The period index if this call took the period's guard, else None."""
    index = period_index(now_s, interval_s)
    ttl_ms = max(1, math.ceil(interval_s * 2 * 1000))
    keys = [guard_key(job, index), won_key(job), STATS_KEY]
    taken = client.eval(CLAIM, len(keys), *keys, token, ttl_ms, index, job, WON_KEEP)
    return index if taken else None


def active_sessions(rt: Runtime) -> list[str]:
    """Sessions that are active in SQL and have state in Redis, oldest first."""
    query = (
        select(TradingSessionRow.id)
        .where(TradingSessionRow.status == "active")
        .order_by(TradingSessionRow.created_at, TradingSessionRow.id)
    )
    with DbSession(rt.engine) as db:
        ids = list(db.scalars(query).all())
    if not ids:
        return []
    with rt.redis.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.exists(state_key(session_id))
        present = pipe.execute()
    return [sid for sid, found in zip(ids, present, strict=True) if found]


@dataclass(frozen=True, slots=True)
class FanOut:
    job: Job
    period: int | None
    sent: list[str] = field(default_factory=list)
    recovering: list[str] = field(default_factory=list)
    """Active sessions found without state, whose recovery this fan-out queued."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "period": self.period,
            "sessions": len(self.sent),
            "recovering": len(self.recovering),
        }


def interval_of(rt: Runtime, job: Job) -> float:
    settings = rt.settings
    if job == "positions":
        return settings.reconcile.positions_interval_s
    return settings.reconcile.orders_interval_s


def fan_out(rt: Runtime, job: Job, now_s: float, token: str, send: Callable[..., Any]) -> FanOut:
    """Claim this period for ``job``; if won, send one task per active session."""
    interval = interval_of(rt, job)
    period = claim_period(rt.redis, job, interval, now_s, token)
    if period is None:
        return FanOut(job, None)
    sessions = active_sessions(rt)
    for session_id in sessions:
        send(
            SESSION_TASKS[job],
            args=[session_id, 0] if job == "positions" else [session_id],
            queue=rt.settings.queues.reconcile,
            expires=interval,
        )
    recovering: list[str] = []
    if job == "positions":
        for session_id in missing_sessions(rt.redis, rt.engine):
            if request_recovery(rt.redis, rt.engine, rt.settings, send, session_id):
                recovering.append(session_id)
    return FanOut(job, period, sessions, recovering)
