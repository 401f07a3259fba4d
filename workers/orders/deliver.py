"""Fill delivery on a broker's word (``tradefleet.orders.deliver``): apply every new fill of
one account, and re-read its acknowledged orders, once per request however many arrive.

A push source (the Tradovate user-sync listener, ``workers.orders.listener``) asks for a
delivery of an account when the broker says something changed there. Requests coalesce: a
request takes the account's pending key (``SET NX`` with a short TTL) and is queued only if it
got it; the task clears the key as it STARTS, so whatever changes while it runs queues the
next one, and a burst of events while one waits in the queue adds nothing. The TTL frees the
key if a queued task is lost.

The delivery itself is idempotent: fills are applied once per execution id
(``workers.orders.fills.deliver_fills``), order rows take the broker's status the way
``poll_order`` records it (``workers.orders.send.recheck_order``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis

from workers.db.order_rows import acknowledged_orders
from workers.db.session_rows import sessions_on_account
from workers.orders.fills import deliver_fills
from workers.orders.send import recheck_order, session_broker
from workers.runtime import Runtime

log = logging.getLogger(__name__)

PENDING_TTL_S = 30
"""How long a queued, not yet started delivery holds off the next request of its account."""


def pending_key(account: str) -> str:
    return f"tf:deliver:{account}:pending"


def request_delivery(
    client: redis.Redis,
    send: Callable[[str], object],
    account: str,
    ttl_s: int = PENDING_TTL_S,
) -> bool:
    """Queue one delivery for ``account`` (``send(account)``) unless one is queued and not
    started yet; True if this call queued it."""
    key = pending_key(account)
    if not client.set(key, "1", nx=True, ex=ttl_s):
        return False
    try:
        send(account)
    except Exception:
        client.delete(key)
        raise
    return True


@dataclass(frozen=True, slots=True)
class DeliverOutcome:
    sessions: int
    fills_applied: int
    orders_rechecked: int


def deliver_account(rt: Runtime, account: str) -> DeliverOutcome:
    """Apply the account's new fills, then re-read its acknowledged orders (working or partly
    filled) at the broker. Each distinct broker behind the account's sessions is read once."""
    rt.redis.delete(pending_key(account))
    sessions = sessions_on_account(rt.engine, account)
    if not sessions:
        log.info("deliver: no session trades account %s", account)
        return DeliverOutcome(0, 0, 0)
    applied = 0
    seen: set[str] = set()
    for session in sessions:
        key = json.dumps([session.account_manager, session.account_manager_args], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        broker = session_broker(rt, session)
        applied += deliver_fills(
            rt.redis, rt.store, rt.engine, broker, account, rt.settings.risk, rt.settings.stops
        )
    rechecked = 0
    for session in sessions:
        broker = session_broker(rt, session)
        for coid in acknowledged_orders(rt.engine, session.id):
            recheck_order(rt, broker, session, coid)
            rechecked += 1
    return DeliverOutcome(len(sessions), applied, rechecked)
