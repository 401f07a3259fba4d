"""Waking a roll's await step when the fill of its order is applied (``workers.orders.fills``).

An await step (``await_close``, ``await_open``) whose order is still working retries itself
every ``settings.rolls.fill_retry_s`` (the fallback: a lost wake still finishes the roll). The
fill path sends ``tradefleet.rolls.wake`` instead of waiting for that retry; which of the two
tasks then goes past the step is the roll's claim (``workers.rolls.wake``).
"""

from __future__ import annotations

import logging

import redis
from celery import current_app
from kombu.exceptions import KombuError
from sqlalchemy.engine import Engine

from trading.rolls import await_step_of
from workers.db.roll_rows import get_roll
from workers.dispatch import names

log = logging.getLogger(__name__)


def send_wake(engine: Engine, client_order_id: str) -> None:
    """Wake the await step of the roll order ``client_order_id`` if the roll waits at that step
    (nothing for other orders). A roll not there yet needs no wake: its chain runs the step's
    check as soon as it gets there. A wake that cannot be sent is only logged: the step's retry
    finishes the roll. It goes, routed by its name, through the process's current Celery app (a
    worker's; a command's that made one): none is sent from a process without one, which would
    otherwise be Celery's unconfigured default app."""
    found = await_step_of(client_order_id)
    if found is None:
        return
    roll_id, step = found
    row = get_roll(engine, roll_id)
    if row is None or row.status != "running" or row.step != step:
        return
    if current_app.main != names.APP_NAME:
        log.info("roll %s: %s not woken: this process has no tradefleet app", roll_id, step)
        return
    try:
        current_app.send_task(names.ROLLS_WAKE, args=[roll_id, step])
    except (KombuError, OSError, redis.RedisError) as exc:
        log.warning("roll %s: %s not woken (its retry will run it): %s", roll_id, step, exc)
