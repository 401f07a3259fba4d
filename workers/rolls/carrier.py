"""Who carries a running roll's chain: its lease (``tf:roll:<id>:carrier``).

Every chain of a roll (``workers.rolls.chain.roll_chain``) is launched with a token of its own,
its carrier, which each of its step tasks receives. The roll's lease holds the token of the one
chain that carries the roll, with a TTL (``settings.rolls.lease_s``):

- launching a chain (a start, an operator's resume, a woken await step going on, the sweep)
  sets the lease to the new chain's token (``hand_to``); an older chain is then superseded;
- a step task goes on only if the lease is its chain's or has lapsed (``take``), renews it
  while it runs (``keep``: every third of the TTL, from a thread, so a step waiting on a lock
  or paused stays carried), and leaves it with a TTL past its retry's countdown (``hand_on``);
  it records its step done only while the lease is still its chain's;
- a lease that lapsed means nobody carries the roll: the task that held it died with its
  worker's host (a Celery message a dead host held comes back only after the visibility
  timeout). The roll sweep (``workers.rolls.chain.sweep_rolls``) then takes the lease
  (``SET NX``) and launches a chain from the step the roll's row records.

A superseded chain's task (a late redelivery of the dead host's message, or a worker that was
stopped and wakes up) finds another token and stops: it neither does its step nor goes on.
Two copies that both got past that check (a copy that stalled between its check and its
record) are still told apart by the row: only one moves it (``roll_rows.advance``), the other
stops.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from typing import Any

import redis

from workers.state.heartbeat import renewing

CARRIER_KEY = "tf:roll:{roll_id}:carrier"

_TAKE = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


def new_token() -> str:
    return uuid.uuid4().hex


def carrier_key(roll_id: int) -> str:
    return CARRIER_KEY.format(roll_id=roll_id)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def hand_to(client: redis.Redis, roll_id: int, token: str, ttl_s: float) -> None:
    """The roll is carried by the chain ``token`` from now on (any other chain is superseded)."""
    client.set(carrier_key(roll_id), token, px=_ms(ttl_s))


def take_over(client: redis.Redis, roll_id: int, token: str, ttl_s: float) -> bool:
    """The sweep: the lease for chain ``token`` only if nobody holds it (it lapsed)."""
    return bool(client.set(carrier_key(roll_id), token, nx=True, px=_ms(ttl_s)))


def carried(client: redis.Redis, roll_id: int) -> bool:
    """Whether a chain carries the roll (its lease has not lapsed)."""
    return bool(client.exists(carrier_key(roll_id)))


def holder(client: redis.Redis, roll_id: int) -> str | None:
    raw: Any = client.get(carrier_key(roll_id))
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class Carrier:
    """One step task's hold on its roll's lease, as chain ``token``."""

    def __init__(self, client: redis.Redis, roll_id: int, token: str, ttl_s: float) -> None:
        self.client = client
        self.roll_id = roll_id
        self.token = token
        self.ttl_s = ttl_s
        self._key = carrier_key(roll_id)

    def take(self) -> bool:
        """Whether this chain carries the roll: the lease is its own (renewed) or had lapsed
        (taken now); False when another chain carries it."""
        return bool(self.client.eval(_TAKE, 1, self._key, self.token, _ms(self.ttl_s)))

    def holds(self) -> bool:
        """Whether the lease is still this chain's (renewing it)."""
        return self._renew(self.ttl_s)

    def hand_on(self, countdown_s: float) -> bool:
        """Leave the lease with this chain for ``countdown_s`` (the retry's countdown) plus its
        TTL, so that a chain waiting out its countdown is never taken as stalled."""
        return self._renew(countdown_s + self.ttl_s)

    def _renew(self, seconds: float) -> bool:
        return bool(self.client.eval(_RENEW, 1, self._key, self.token, _ms(seconds)))

    def keep(self) -> AbstractContextManager[None]:
        """Renew the lease every third of its TTL while the body runs (the body's own checks
        tell a lost lease: ``holds``)."""
        return renewing(self.holds, self.ttl_s / 3, f"roll-{self.roll_id}-carrier")
