"""Waking a roll's await step when the fill of its order is applied, and who goes on after it.

An await step (``await_close``, ``await_open``) whose order is still working retries itself
every ``settings.rolls.fill_retry_s`` (the fallback: a lost wake still finishes the roll). When
the fill path (``workers.orders.fills``) applies a fill of a roll order (``roll-<id>-close`` or
``roll-<id>-open``) while the roll waits at that order's await step, it sends
``tradefleet.rolls.wake`` (``workers.dispatch.rolls.send_wake``), which runs the step's check at
once instead of at its next retry.

Two tasks may then run the same await step: the chain's (its retry) and the wake's. Exactly
one of them goes past the step: the one that takes the step's claim (``take_claim``: a Redis
``SET NX`` of its task id, per roll and await step) just before it records the step done. The
other stops, and with it its copy of the chain: the rest of the roll runs once. A task that
is redelivered or retried keeps its task id, so it still holds its claim and goes on. The
claim of a step not recorded done is released when the operator resumes the roll
(``release_claims``), so a task that failed after claiming cannot hold the roll back; a wake
that fails for good holding the claim fails the roll, as the chain's errback would have.
"""

from __future__ import annotations

from typing import Any

import redis

from trading.rolls import STEPS

AWAIT_STEPS = frozenset({"await_close", "await_open"})
CLAIM_KEY = "tf:roll:{roll_id}:claim:{step}"
CLAIM_TTL_S = 7 * 86_400
"""A claim outlives any redelivery of the task that took it (the visibility timeout)."""


def take_claim(client: redis.Redis, roll_id: int, step: str, runner: str) -> bool:
    """Whether task ``runner`` goes past await step ``step``: it holds the step's claim (taken
    now, or earlier by the same task id). Other steps have no claim: always True."""
    if step not in AWAIT_STEPS:
        return True
    key = CLAIM_KEY.format(roll_id=roll_id, step=step)
    if client.set(key, runner, nx=True, ex=CLAIM_TTL_S):
        return True
    return holds_claim(client, roll_id, step, runner)


def holds_claim(client: redis.Redis, roll_id: int, step: str, runner: str) -> bool:
    """Whether task ``runner`` holds the claim of await step ``step`` (without taking it)."""
    held: Any = client.get(CLAIM_KEY.format(roll_id=roll_id, step=step))
    return held is not None and (held.decode() if isinstance(held, bytes) else held) == runner


def release_claims(client: redis.Redis, roll_id: int, from_step: str) -> None:
    """Release the claims of the await steps at or after ``from_step`` (none recorded done)."""
    later = STEPS[STEPS.index(from_step) :] if from_step in STEPS else ()
    keys = [CLAIM_KEY.format(roll_id=roll_id, step=s) for s in later if s in AWAIT_STEPS]
    if keys:
        client.delete(*keys)
